"""The supervisor: keeps N persistent worker processes alive on one host.

Job: start worker processes (spawn), notice at once when one dies, requeue what it
owned, start a replacement (with backoff when it keeps crashing), recycle processes
that did too many tasks or grew too big, write its own heartbeat, run the leader
services thread and the extensions' per-process services (`services()`, e.g. a metrics
exporter), and shut everything down gracefully on SIGTERM.

Contract: a dead child is detected through its process sentinel (no polling), its
RUNNING/PAUSED invocations are requeued and its heartbeat record is marked stopped (a
SIGKILLed child cannot do it) before the replacement starts; the supervisor's own record
lists its current children. A child that exits with `EXIT_HARD_LIMIT` (it stopped itself
for a task past its hard limit) or that was SIGKILLed while running (the OOM killer, an
operator) is replaced at once, without backoff (`restart_delay`). Children die with the
supervisor (PR_SET_PDEATHSIG on Linux), so a SIGKILLed supervisor looks like a lost
host: its heartbeats go stale and the leader elsewhere requeues its work after
`dead_after`, unless a new supervisor starts on the same host first: that one requeues
it at once (`_same_host`: the pids of the dead runners are gone). On SIGTERM or SIGINT:
children get SIGTERM, stop taking work, finish within `shutdown_grace`; whatever is left
is requeued; exit status 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from fleet.state import RunnerRecord
from fleet.worker import _same_host, _services, health, recovery
from fleet.worker.child import child_main
from fleet.worker.leader import Leader
from fleet.worker.process import EXIT_HARD_LIMIT, runner_id

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger(__name__)


CRASH_LOOP = 10.0
"""A child that exits on its own within this many seconds of starting is crash-looping."""
STARTING = 1.0
"""A child SIGKILLed within this many seconds of starting (an OOM kill while it imports
the app) counts as crash-looping too."""


def restart_delay(code: int | None, lived: float, failures: int) -> tuple[int, float]:
    """(crashes in a row, seconds to wait) before replacing a child that ended with exit
    status `code` after `lived` seconds, `failures` crashes in a row before it.

    Crashes in a row wait 0.5 s, doubling up to 30 s. A clean exit, a hard-limit exit and
    a SIGKILL from outside once the child was running (the OOM killer, an operator) are
    replaced at once, as Celery's prefork pool does: with a backoff, a host whose
    children are killed every few seconds ran with one child or none."""
    killed = code == -signal.SIGKILL and lived >= STARTING
    crashed = code not in (0, EXIT_HARD_LIMIT) and not killed
    failures = failures + 1 if crashed and lived < CRASH_LOOP else 0
    return failures, min(30.0, 0.5 * 2 ** (failures - 1)) if failures else 0.0


@dataclass
class Child:
    index: int
    runner: str
    process: BaseProcess
    started: float
    failures: int = 0


class Supervisor:
    """Runs `processes` worker processes of the app at `app_path` ('module:attr')."""

    def __init__(
        self, app: Fleet, app_path: str, *, processes: int, threads: int, queues: list[str]
    ) -> None:
        self.app = app
        self.app_path = app_path
        self.processes = processes or os.cpu_count() or 1
        self.threads = threads
        self.queues = queues or app.queues.names()
        self.id = runner_id("supervisor")
        self.children: dict[int, Child] = {}
        self.started = time.time()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._ctx = multiprocessing.get_context("spawn")
        self.leader = Leader(app, self.id)
        self.services: list[Any] = []

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        runtime = self.app.runtime()
        runtime.declare(self.queues)
        self.beat()
        for index in range(self.processes):
            self._start(index)
        # While the children start: the work of a worker of this host killed whole.
        _same_host.recover_dead(self.app, self.id)
        self.leader.start()
        self.services = _services.start(self.app.dispatcher)  # e.g. the metrics exporter
        log.info(
            "supervisor %s: %d process(es) x %d thread(s) on %s",
            self.id,
            self.processes,
            self.threads,
            ",".join(self.queues),
        )
        next_beat = time.monotonic()
        interval = self.app.settings.heartbeat_interval
        while not self._stopping.is_set():
            sentinels = {c.process.sentinel: c for c in self.children.values()}
            timeout = max(0.0, next_beat - time.monotonic())
            ready = wait([*sentinels, self._wake_r], timeout=timeout)
            for sentinel in ready:
                child = sentinels.get(sentinel) if isinstance(sentinel, int) else None
                if child is not None and not self._stopping.is_set():
                    self._child_exited(child)
            if time.monotonic() >= next_beat:
                self.beat()
                next_beat = time.monotonic() + interval
        self._shutdown()
        return 0

    def stop(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            self._wake_w.send_bytes(b"x")

    def _start(self, index: int, failures: int = 0) -> None:
        runner = (
            f"{socket.gethostname()}:{self.id.split(':')[1]}:process-{index}:{os.urandom(3).hex()}"
        )
        process = self._ctx.Process(
            target=child_main,
            args=(self.app_path, runner, self.id, self.queues, self.threads),
            name=f"fleet-worker-{index}",
        )
        process.start()
        self.children[index] = Child(index, runner, process, time.monotonic(), failures)
        log.info("started worker process %s (pid %s)", runner, process.pid)

    def _child_exited(self, child: Child) -> None:
        process = child.process
        process.join()
        code = process.exitcode
        lived = time.monotonic() - child.started
        log.warning(
            "worker process %s (pid %s) exited with %s after %.1fs",
            child.runner,
            process.pid,
            code,
            lived,
        )
        self._recover([child.runner], f"worker process exited ({code})")
        self._mark_stopped([child])
        failures, delay = restart_delay(code, lived, child.failures)
        if delay and self._stopping.wait(delay):
            return
        self._start(child.index, failures)
        self.beat()  # name the replacement at once (`fleet check` judges current children)

    def _shutdown(self) -> None:
        log.info("supervisor %s: shutting down", self.id)
        for child in self.children.values():
            if child.process.is_alive() and child.process.pid:
                os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.app.settings.shutdown_grace + 10
        for child in self.children.values():
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                log.error("worker process %s ignored SIGTERM; killing it", child.runner)
                child.process.kill()
                child.process.join()
        self._recover([c.runner for c in self.children.values()], "worker shut down")
        self._mark_stopped(list(self.children.values()))
        self.leader.stop()
        _services.stop(self.services)
        self.beat(stopped=True)
        self.app.close()

    def _recover(self, owners: list[str], why: str) -> None:
        """Requeue what `owners` held; if the store is down, the leader's orphan recovery
        finds it later (their heartbeats stop), so a failure here is only logged."""
        try:
            moved = recovery.recover_owned(self.app, owners, self.id, why)
        except Exception:
            log.exception("could not requeue the work of %s now; recovery will", owners)
            return
        if moved:
            log.warning("requeued %d invocation(s) of %s (%s)", moved, ", ".join(owners), why)

    def _mark_stopped(self, children: list[Child]) -> None:
        """Record exited children as stopped (a killed one could not say so itself), so
        that neither `fleet check` nor recovery takes them for live or lost runners."""
        now = time.time()
        records = [
            RunnerRecord(
                id=c.runner,
                kind="process",
                host=socket.gethostname(),
                pid=c.process.pid or 0,
                beat=now,
                parent=self.id,
                queues=tuple(self.queues),
                started=time.time() - (time.monotonic() - c.started),
                stopped=True,
                info={"exitcode": c.process.exitcode},
            )
            for c in children
        ]
        try:
            self.app.runtime().state.beat(records)
        except Exception:
            log.warning("could not mark %d exited worker process(es) stopped", len(records))

    def record(self, stopped: bool = False) -> RunnerRecord:
        return RunnerRecord(
            id=self.id,
            kind="supervisor",
            host=socket.gethostname(),
            pid=os.getpid(),
            beat=time.time(),
            queues=tuple(self.queues),
            started=self.started,
            stopped=stopped,
            info={
                "processes": self.processes,
                "threads": self.threads,
                "children": [c.runner for c in self.children.values()],
                "leader": self.leader.leading,
                **_same_host.info(self.app.settings.host_id),
            },
        )

    def beat(self, stopped: bool = False) -> None:
        health.write(
            self.app.settings.health_dir,
            health.SUPERVISOR,
            {
                "beat": time.time(),
                "pid": os.getpid(),
                "children": [c.process.pid for c in self.children.values() if c.process.pid],
                "processes": self.processes,
                "stopping": stopped or self._stopping.is_set(),
            },
        )
        try:
            self.app.runtime().state.beat([self.record(stopped)])
        except Exception:
            log.warning("supervisor heartbeat failed", exc_info=True)
