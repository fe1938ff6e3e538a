"""Bodies completed twice while worker processes are SIGKILLed, fleet against Celery.

Usage: `python -m bench.duplicates [--runs N] [--tasks N] [--rate R] [--kill-every S]
[--systems rabbitmq-sqlite,embedded,celery-reliable,dramatiq-defaults]`

Job: for each system, start its worker pool (2 processes: fleet `fleet worker
--processes 2 --threads 4`, on RabbitMQ + SQLite and embedded SQLite; Celery prefork
`-c 2` with its reliable setting, `task_acks_late` + `task_reject_on_worker_lost`;
Dramatiq's CLI with `--processes 2 --threads 4` and its defaults, for information),
submit `--tasks` calls of a body that sleeps 10 ms and then appends its key to a
completion log (`bench.completions`), and meanwhile SIGKILL one worker *child* every
`--kill-every` seconds on average (each kill moved by up to a quarter of that at random,
so that kills do not fall in step with submissions): a random live child of the pool's
leader, found through /proc (never the supervisor or main process, never by name).
Submission is throttled to `--rate` calls/s (default 100/s: 2,000 calls span 20 s,
about 10 kills), the same for every system, so each pool sees the same arrival rate
and the same number of kills whatever its capacity (fleet's 8 slots would otherwise
finish in a few seconds).

A run ends when every key is in the log (deadline `--deadline` s after the last
submit); then kills stop and the run settles: fleet waits for every invocation to be
final (a rerun of a completed body would come before that), every system then waits
until the log has not grown for 3 s. Dramatiq's CLI shuts its whole pool down when a
worker dies; the bench starts it again, as a process manager would (restarts counted).

Contract: prints a per-run table and a summary (medians and totals over `--runs`) with
the system's short name in the first column (read by `bench.report`); lost = keys never
completed, completed twice = keys whose body completed two or more times, kills =
SIGKILLs sent, wall = first submit until every key completed. Runs are interleaved,
system by system. One RabbitMQ node of its own (`fleet.testing.rabbitmq`), stopped by
PID. Each (system, run) runs in a child process (`--one`), so each fleet configuration
imports `bench.tasks` against its own environment.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import completions
from bench.configs import SYSTEMS, fleet_env
from bench.procs import REPO, Pool, fleet_pool, python_module

MEASURED = ("rabbitmq-sqlite", "embedded", "celery-reliable", "dramatiq-defaults")
PROCESSES, THREADS = 2, 4
SETTLE = 3.0
HELPERS = ("resource_tracker", "semaphore_tracker", "forkserver")
"""Children of a pool that run no task (multiprocessing's helpers): never killed."""


@dataclass
class Outcome:
    system: str
    run: int
    lost: int = 0
    twice: int = 0
    kills: int = 0
    wall: float = 0.0
    restarts: int = 0
    notes: list[str] = field(default_factory=list)


# -- one (system, run), in a child process -------------------------------------------


def children(pid: int) -> list[int]:
    """Live direct children of `pid` that may run tasks, from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z" and not any(h in cmdline for h in HELPERS):
            found.append(int(name))
    return found


class Killer(threading.Thread):
    """SIGKILLs a random live child of the pool every `every` seconds until stopped."""

    def __init__(self, pool: Pool, every: float, seed: int) -> None:
        super().__init__(name="bench-killer", daemon=True)
        self.pool, self.every = pool, every
        self.random = random.Random(seed)
        self.stopped = threading.Event()
        self.kills: list[tuple[float, int]] = []
        self.ticks: list[float] = []

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopped.wait(self._next(start) - time.monotonic()):
            self.ticks.append(time.monotonic())
            if not self.pool.alive():
                continue
            live = children(self.pool.pid)
            if live:
                victim = self.random.choice(live)
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.kills.append((time.time(), victim))

    def _next(self, start: float) -> float:
        """The next kill: every `every` seconds on average, each moved by up to a quarter
        of that at random, so that kills do not fall in step with the submissions (one
        every 1/rate s, the same grid as the kills): in step, every kill landed at the
        same moment of a body's life."""
        jitter = self.random.uniform(-0.25, 0.25) * self.every
        return start + (len(self.ticks) + 1) * self.every + jitter


def _pool_and_submit(
    system: str, url: str, log: Path, env: dict[str, str]
) -> tuple[Pool, Callable[[str], Any], Callable[[], None], Callable[[list[Any]], str]]:
    """The pool (not started), a submit function, a wait-until-consuming function and
    a wait-until-final function (returns a note) for `system`."""
    os.environ.update(env)
    if SYSTEMS[system].kind == "fleet":
        from bench import tasks
        from bench.workloads import wait_consumers
        from fleet.invocation import Group

        pool = fleet_pool(PROCESSES, THREADS, env, log, "bench.tasks:app")

        def final(handles: list[Any]) -> str:
            try:
                Group(handles).results(120)
            except Exception as exc:  # noted: a failed body is not a duplicate
                return f"not all final: {type(exc).__name__}: {exc}"
            return ""

        return pool, tasks.mark, lambda: wait_consumers(tasks, pool, PROCESSES), final
    from bench.baselines import wait_consumers as amqp_consumers

    if system == "celery-reliable":
        import bench.celery_tasks as ct
        from bench.celery_run import celery_argv

        pool = Pool(celery_argv("bench.celery_tasks", ct.QUEUE, PROCESSES), env, log)
        return (
            pool,
            ct.mark.delay,
            lambda: amqp_consumers(url, ct.QUEUE, 1, pool),
            lambda _: "",
        )
    import bench.dramatiq_tasks as dt

    argv = python_module(
        "dramatiq",
        "bench.dramatiq_tasks",
        "--processes",
        str(PROCESSES),
        "--threads",
        str(THREADS),
        "--queues",
        dt.QUEUE,
    )
    pool = Pool(argv, env, log)
    return pool, dt.mark.send, lambda: amqp_consumers(url, dt.QUEUE, PROCESSES, pool), lambda _: ""


def measure_one(args: argparse.Namespace) -> Outcome:
    system, folder = args.one, Path(args.dir)
    out = Outcome(system, args.run)
    completion_log = folder / f"{system}-{args.run}.completions"
    env = {completions.LOG_ENV: str(completion_log)}
    env.update(_system_env(system, args.url, folder))
    pool, submit, ready, final = _pool_and_submit(
        system, args.url, folder / f"{system}-{args.run}.log", env
    )
    keys = [f"k{args.run}-{i}" for i in range(args.tasks)]
    handles: list[Any] = []

    def produce() -> None:
        start = time.monotonic()
        for i, key in enumerate(keys):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            handles.append(submit(key))

    with pool:
        ready()
        killer = Killer(pool, args.kill_every, seed=args.run)
        producer = threading.Thread(target=produce, name="bench-producer", daemon=True)
        began = time.monotonic()
        producer.start()
        killer.start()
        deadline = began + args.tasks / args.rate + args.deadline
        while time.monotonic() < deadline:
            _keep_alive(pool, out)
            if len(completions.read(completion_log)) == len(keys):
                break
            time.sleep(0.05)
        out.wall = time.monotonic() - began
        killer.stopped.set()
        killer.join()
        producer.join(60)
        note = final(handles)
        if note:
            out.notes.append(note)
        _settle(pool, out, completion_log, deadline + 60)
    _count(out, keys, completions.read(completion_log), killer.kills)
    return out


def _keep_alive(pool: Pool, out: Outcome) -> None:
    """Start the pool again if its leader exited (Dramatiq's does when a worker dies)."""
    if not pool.alive():
        pool.stop()
        pool.start()
        out.restarts += 1


def _settle(pool: Pool, out: Outcome, completion_log: Path, limit: float) -> None:
    """Wait until the completion log has not grown for SETTLE seconds."""
    size, quiet = -1, time.monotonic()
    while time.monotonic() - quiet < SETTLE and time.monotonic() < limit:
        _keep_alive(pool, out)
        now = completion_log.stat().st_size if completion_log.exists() else 0
        if now != size:
            size, quiet = now, time.monotonic()
        time.sleep(0.1)


def _count(
    out: Outcome,
    keys: list[str],
    seen: dict[str, list[tuple[int, float]]],
    kills: list[tuple[float, int]],
) -> None:
    out.kills = len(kills)
    out.lost = sum(1 for k in keys if k not in seen)
    doubled = {k: v for k, v in seen.items() if len(v) > 1}
    out.twice = len(doubled)
    killed = {pid: t for t, pid in kills}
    for key, runs in list(doubled.items())[:5]:
        pid, when = runs[0]
        after = (
            f", its process killed {1000 * (killed[pid] - when):.1f} ms later"
            if pid in killed
            else ""
        )
        out.notes.append(f"{key}: completed {len(runs)} times; first by pid {pid}{after}")


def _system_env(system: str, url: str, folder: Path) -> dict[str, str]:
    chosen = SYSTEMS[system]
    if chosen.kind == "fleet":
        return fleet_env(chosen, folder, "dups", url)
    if chosen.kind == "celery":
        from bench.celery_run import celery_env

        return celery_env(url, reliable=True)
    from bench.baselines import dramatiq_env

    return dramatiq_env(url, confirm=False)


# -- the whole run -----------------------------------------------------------------------


def run_all(args: argparse.Namespace) -> list[Outcome]:
    from fleet.testing.rabbitmq import RabbitMQServer

    outcomes: list[Outcome] = []
    folder = Path(tempfile.mkdtemp(prefix="fleet-dups-"))
    (folder / "rabbitmq").mkdir()
    with RabbitMQServer(base_dir=folder / "rabbitmq") as server:
        for run in range(1, args.runs + 1):
            for system in args.systems:
                outcomes.append(_child(args, system, run, server.url, folder))
                o = outcomes[-1]
                print(
                    f"# run {run} {system}: lost {o.lost}, twice {o.twice}, kills {o.kills}, "
                    f"wall {o.wall:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"# logs in {folder}", file=sys.stderr)
    return outcomes


def _child(args: argparse.Namespace, system: str, run: int, url: str, folder: Path) -> Outcome:
    result = folder / f"{system}-{run}.json"
    argv = python_module(
        "bench.duplicates",
        "--one",
        system,
        "--run",
        str(run),
        "--url",
        url,
        "--dir",
        str(folder),
        "--tasks",
        str(args.tasks),
        "--rate",
        str(args.rate),
        "--kill-every",
        str(args.kill_every),
        "--deadline",
        str(args.deadline),
        "--result",
        str(result),
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET__", "BENCH_"))}
    limit = args.tasks / args.rate + args.deadline + 300
    done = subprocess.run(argv, env=environ, cwd=REPO, timeout=limit, check=False)
    if done.returncode or not result.exists():
        failed = Outcome(system, run, lost=args.tasks)
        failed.notes.append(f"the run failed (exit {done.returncode}); see {folder}")
        return failed
    return Outcome(**json.loads(result.read_text()))


def table(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    lines = [
        f"{args.tasks} tasks of {completions.SLEEP * 1000:g} ms submitted at {args.rate:g}/s; "
        f"one worker child SIGKILLed every {args.kill_every:g} s; {args.runs} run(s)",
        "",
        "| system | run | lost | completed twice | kills | wall s | pool restarts |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.system} | {o.run} | {o.lost} | {o.twice} | {o.kills} | {o.wall:.1f} "
            f"| {o.restarts} |"
        )
    lines += [
        "",
        "| system | label | runs | lost (total) | completed twice (total) "
        "| completed twice (median) | kills (total) | wall s (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system in args.systems:
        mine = [o for o in outcomes if o.system == system]
        if not mine:
            continue
        lines.append(
            f"| {system} | {SYSTEMS[system].label} | {len(mine)} "
            f"| {sum(o.lost for o in mine)} | {sum(o.twice for o in mine)} "
            f"| {statistics.median(o.twice for o in mine):g} | {sum(o.kills for o in mine)} "
            f"| {statistics.median(o.wall for o in mine):.1f} |"
        )
    notes = [f"- {o.system} run {o.run}: {n}" for o in outcomes for n in o.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.duplicates")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="submits per second")
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between kills")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds after submitting")
    parser.add_argument("--systems", default=",".join(MEASURED))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in MEASURED]
    if unknown:
        parser.error(f"--systems: unknown {unknown!r}; known: {', '.join(MEASURED)}")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.one:
        outcome = measure_one(args)
        Path(args.result).write_text(json.dumps(asdict(outcome)))
        return 0
    print(table(run_all(args), args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
