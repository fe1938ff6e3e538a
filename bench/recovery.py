"""Recovery time: how long the work of a SIGKILLed worker waits before it runs again.

Run: `python -m bench.recovery [--runs N] [--before]` (starts a RabbitMQ node of its own
on loopback ports; stopped by PID at the end).

Two cases, each on fleet over SQLite and over RabbitMQ + SQLite, medians of `--runs`:
- same host: a worker (1 process x 3 threads) runs 3 tasks of 8 s; the whole worker
  (supervisor and its process, one process group) is SIGKILLed and a new one started on
  the same host. Measured: seconds from the new start until all 3 finished (Dramatiq
  8 s, Celery with acks_late 9 s; issue 15's goal <= 12 s).
- host gone: the same, but no new worker on that host; a second worker, already
  running under another `host_id`, takes over once the dead one's heartbeats are
  stale (and the leader lease it held expired). Measured: seconds from the dead
  worker's last heartbeat until all 3 were requeued (goal <= 15 s), and until they
  finished.
With `--before`, the settings of fleet before issue 15 (heartbeat 5 s, dead_after 30 s,
recovery 10 s, lease 15 s) and the new worker under another `host_id` (no same-host
recovery): the old figures, measured the same way.
Times come from the invocations' history (the store's clock), not from the harness.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fleet import Fleet, Status
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import WorkerCommand

APP = "bench.tasks:app"
TASK = "bench.tasks.sleeper"
SECONDS = 8.0
BEFORE = {
    "FLEET__HEARTBEAT_INTERVAL": "5",
    "FLEET__DEAD_AFTER": "30",
    "FLEET__RECOVERY_INTERVAL": "10",
    "FLEET__LEASE_TTL": "15",
}
TIMEOUT = 180.0


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def _stack(broker: str, before: bool) -> Iterator[tuple[Fleet, dict[str, str]]]:
    """An app and the worker environment over a fresh database (and queue)."""
    with tempfile.TemporaryDirectory(prefix="fleet-recovery-") as folder:
        name = f"recovery-{uuid.uuid4().hex[:8]}"
        queues = Path(folder, "queues.yaml")
        queues.write_text("queues: {}\n")
        db = f"sqlite:///{folder}/fleet.db"
        env = {
            "FLEET__BROKER_URL": broker or db,
            "FLEET__STATE_URL": db,
            "FLEET__NAME": name,
            "FLEET__DEFAULT_QUEUE": name,
            "FLEET__QUEUES_FILE": str(queues),
            "FLEET__LOG_LEVEL": "WARNING",
            **(BEFORE if before else {}),
        }
        app = Fleet(**{k[len("FLEET__") :].lower(): v for k, v in env.items()})
        try:
            yield app, env
        finally:
            app.close()


def _worker(env: dict[str, str], **extra: str) -> WorkerCommand:
    return WorkerCommand(APP, processes=1, threads=3, env={**env, **extra}).start()


def _running(app: Fleet, env: dict[str, str]) -> tuple[WorkerCommand, list[str]]:
    worker = _worker(env)
    ids = [app.send(TASK, SECONDS).id for _ in range(3)]
    state = app.runtime().state
    _wait("3 tasks running", lambda: all(r.status is Status.RUNNING for r in state.get(ids)))
    return worker, ids


def _kill(worker: WorkerCommand) -> None:
    os.killpg(worker.pid, signal.SIGKILL)  # the supervisor and its worker process
    assert worker.process is not None
    worker.process.wait()


def _finished(app: Fleet, ids: list[str]) -> list[float]:
    state = app.runtime().state
    _wait("3 tasks finished", lambda: all(r.status.final for r in state.get(ids)), TIMEOUT)
    records = state.get(ids)
    assert all(r.status is Status.SUCCESS for r in records), [r.status for r in records]
    return [max(h.at for h in r.history if h.status is Status.SUCCESS) for r in records]


def same_host(broker: str, before: bool) -> float:
    """Seconds from the new worker's start until all 3 finished."""
    with _stack(broker, before) as (app, env):
        first, ids = _running(app, env)
        _kill(first)
        began = time.time()
        # Before issue 15 no worker recovered its host's dead: another host_id says so.
        second = _worker(env, **({"FLEET__HOST_ID": "restarted"} if before else {}))
        try:
            return max(_finished(app, ids)) - began
        finally:
            second.stop()


def host_gone(broker: str, before: bool) -> tuple[float, float]:
    """Seconds from the dead worker's last heartbeat until all 3 were requeued, and
    until all 3 finished."""
    with _stack(broker, before) as (app, env):
        victim, ids = _running(app, env)  # first: it holds the leader lease
        other = _worker(env, FLEET__HOST_ID=f"other-{uuid.uuid4().hex[:6]}")
        state = app.runtime().state
        _wait("the other worker", lambda: len([r for r in state.runners() if not r.stopped]) > 2)
        try:
            _kill(victim)
            runners = state.runners()
            supervisor = next(r for r in runners if r.kind == "supervisor" and r.pid == victim.pid)
            last = max(r.beat for r in runners if supervisor.id in (r.id, r.parent))
            done = _finished(app, ids)
            requeued = [
                max(h.at for h in r.history if h.status is Status.PENDING and h.at > last)
                for r in state.get(ids)
            ]
            return max(requeued) - last, max(done) - last
        finally:
            other.stop()


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", action="store_true", help="fleet's settings before #15")
    args = parser.parse_args()
    rows = []
    with RabbitMQServer() as server:
        for label, broker in (("SQLite", ""), ("RabbitMQ + SQLite", server.url)):
            same: list[float] = []
            requeue: list[float] = []
            finish: list[float] = []
            for _ in range(args.runs):
                same.append(same_host(broker, args.before))
                gone = host_gone(broker, args.before)
                requeue.append(gone[0])
                finish.append(gone[1])
                print(
                    f"{label}: same host {same[-1]:.1f} s; host gone: requeued {gone[0]:.1f} s,"
                    f" finished {gone[1]:.1f} s after its last heartbeat",
                    flush=True,
                )
            rows.append((label, same, requeue, finish))
    settings = "settings before issue 15" if args.before else "default settings"
    print(f"\nRecovery of 3 tasks of {SECONDS:g} s, {settings}; medians of {args.runs} run(s)")
    print("| system | same host: all finished after new start (s) |"
          " host gone: requeued after last beat (s) | host gone: all finished (s) |")  # fmt: skip
    print("|---|---|---|---|")
    for label, same, requeue, finish in rows:
        print(f"| {label} | {_median(same)} | {_median(requeue)} | {_median(finish)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
