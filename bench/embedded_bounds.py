"""`python -m bench.embedded_bounds`: what bounds embedded W1 on this machine.

Job: measure, in interleaved rounds, the parts that embedded W1 (one producer thread,
a 2 x 4 worker pool, every process writing one SQLite file) is made of, so that the
issue-15 target (>= 5,500 tasks/s) can be set against lower bounds measured in the same
run instead of guessed:
- `commit floor`: one raw `sqlite3` transaction per call inserting an invocation row
  and a message row into fleet's own schema, with fleet's pragmas (WAL,
  synchronous=NORMAL): what a durable call costs with no Python framework around it.
  Once with one connection, once with two of one process taking turns: SQLite drops a
  connection's page cache whenever another one committed, so the second shows what
  reading the pages again costs, without any wait for the write lock.
- `lone producer`: `noop(i)` on the embedded default, nothing consuming: the whole
  call path (encode, record and message in one commit, doorbell) in one process.
- `two producers, one file` / `two files`: two such processes at once, sharing one
  database file or each with its own. Their difference is what sharing the file costs
  each writer (every transaction after another process's commit reads its pages again).
- `worker drain, T slots`: a backlog of `--drain` calls made first, then a pool of
  2 processes x T threads started on it; the pool's CPU per task and its rate are
  counted from the first result on, so its start-up is left out.

Contract: prints one table of medians (min-max) over `--rounds` rounds; CPU is
user + system time of the measured processes per call or task. Children are this
module run with `--child`; every process works on files of its own temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.configs import SYSTEMS, fleet_env
from bench.measure import CpuMeter
from bench.procs import REPO, fleet_pool
from fleet.broker._sqlite_schema import SCHEMA as BROKER_SCHEMA
from fleet.state._sqlite_schema import SCHEMA as STATE_SCHEMA
from fleet.status import Status

Sample = dict[str, float]


def commit_floor(folder: Path, n: int, connections: int = 1) -> Sample:
    """Raw sqlite3: one transaction (invocation row + message row) per call, made by
    `connections` connections of this process in turn."""
    dbs = []
    for _ in range(connections):
        db = sqlite3.connect(folder / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        dbs.append(db)
    dbs[0].executescript(STATE_SCHEMA)
    dbs[0].executescript(BROKER_SCHEMA)
    body = b"\x92\x00\x80" * 20
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        now = time.time()
        iid = f"{time.time_ns():016x}{i:020x}"
        db = dbs[i % connections]
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO fleet_invocations (id, task, queue, args, codec, status, created,"
            " updated) VALUES (?, 'bench.tasks.noop', 'q', ?, 'msgpack', ?, ?, ?)",
            (iid, body, Status.PENDING.value, now, now),
        )
        db.execute(
            "INSERT INTO fleet_messages (queue, body, invocation_id, priority, headers,"
            " delivery_count, created, visible_at) VALUES ('q', ?, ?, 0, '', 0, ?, 0)",
            (body, iid, now),
        )
        db.execute("COMMIT")
    sample = _rates(n, time.perf_counter() - began, time.process_time() - cpu)
    for db in dbs:
        db.close()
    return sample


def _rates(n: int, seconds: float, cpu_seconds: float) -> Sample:
    return {"rate": n / seconds, "cpu": 1e6 * cpu_seconds / n}


def _env(folder: Path) -> dict[str, str]:
    return fleet_env(SYSTEMS["embedded"], folder, "W1")


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.embedded_bounds", "--child", *args],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(child: subprocess.Popen[str]) -> Sample:
    out, _ = child.communicate(timeout=600)
    if child.returncode:
        raise SystemExit(f"a child run failed (exit {child.returncode}): {child.args}")
    sample: Sample = json.loads(out.strip().splitlines()[-1])
    return sample


def producers(folder: Path, n: int, count: int, shared: bool) -> Sample:
    """`count` producer processes at once, on one file or each on its own; the mean of
    their rates and CPU per call."""
    envs = [_env(folder)] * count if shared else [_env(folder) for _ in range(count)]
    children = [_child(["produce", str(n)], env) for env in envs]
    try:
        samples = [_result(c) for c in children]
    finally:
        _stop(children)
    return {k: statistics.fmean(s[k] for s in samples) for k in ("rate", "cpu")}


def drain(folder: Path, n: int, threads: int) -> Sample:
    child = _child(["drain", str(n), str(threads), str(folder)], _env(folder))
    try:
        return _result(child)
    finally:
        _stop([child])


def _stop(children: list[subprocess.Popen[str]]) -> None:
    """SIGTERM the children still running (after one failed or timed out); a drain
    child then stops its worker pool on the way out."""
    for child in children:
        if child.poll() is None:
            child.terminate()
            child.wait(30)


# -- children (their backends come from FLEET__* in the environment) ---------------------


def _produce(n: int) -> Sample:
    from bench import tasks

    tasks.noop(-1)  # connect and create the schema outside the measured section
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        tasks.noop(i)
    sample = _rates(n, time.perf_counter() - began, time.process_time() - cpu)
    tasks.app.close()
    return sample


def _drain(n: int, threads: int, folder: Path) -> Sample:
    from bench import tasks
    from fleet.invocation import Group

    handles = [tasks.noop(i) for i in range(n)]
    db = os.environ["FLEET__STATE_URL"].removeprefix("sqlite:///")
    pool = fleet_pool(2, threads, {}, folder / "drain.log", "bench.tasks:app").start()
    try:
        handles[0].result(120)
        with CpuMeter([pool.pid]) as meter:
            began = time.perf_counter()
            done = finished(db)
            Group(handles).results(600)
            seconds = time.perf_counter() - began
        return _rates(n - done, seconds, meter.pool_seconds)
    finally:
        pool.stop()
        tasks.app.close()


def finished(db: str) -> int:
    """Invocations of the SQLite file `db` that succeeded (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        query = "SELECT count(*) FROM fleet_invocations WHERE status = ?"
        return int(conn.execute(query, (Status.SUCCESS.value,)).fetchone()[0])
    finally:
        conn.close()


def _run_child(argv: list[str]) -> None:
    # SIGTERM from the parent (`_stop`) unwinds, so a drain stops its pool on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    kind, n = argv[0], int(argv[1])
    sample = _produce(n) if kind == "produce" else _drain(n, int(argv[2]), Path(argv[3]))
    print(json.dumps(sample), flush=True)


# -- the table ----------------------------------------------------------------------------


def _cell(values: list[float], digits: int = 0) -> str:
    fmt = f"{{:,.{digits}f}}"
    mid = fmt.format(statistics.median(values))
    return f"{mid} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _run_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per producer run")
    parser.add_argument("--drain", type=int, default=30_000, help="backlog per drain run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    parts: dict[str, Any] = {
        "commit floor (raw sqlite3, one connection)": lambda d: commit_floor(d, args.calls),
        "commit floor, two connections taking turns": lambda d: commit_floor(d, args.calls, 2),
        "lone producer (fleet, nothing consuming)": lambda d: producers(d, args.calls, 1, True),
        "two producers, one file (each)": lambda d: producers(d, args.calls, 2, True),
        "two producers, two files (each)": lambda d: producers(d, args.calls, 2, False),
        "worker drain, 2 x 4 slots (pool)": lambda d: drain(d, args.drain, 4),
        "worker drain, 2 x 16 slots (pool)": lambda d: drain(d, args.drain, 16),
    }
    found: dict[str, list[Sample]] = {name: [] for name in parts}
    for r in range(args.rounds):
        names = list(parts) if r % 2 == 0 else list(reversed(parts))
        for name in names:
            with tempfile.TemporaryDirectory(prefix="fleet-bounds-") as tmp:
                found[name].append(parts[name](Path(tmp)))
            print(f"round {r + 1}: {name}: {found[name][-1]}", file=sys.stderr, flush=True)
    print(f"embedded W1 bounds: median (min-max) of {args.rounds} interleaved rounds,")
    print(f"{args.calls:,} calls per producer run, {args.drain:,} tasks per drain run")
    print()
    print("| part | calls or tasks/s | CPU us per call or task |")
    print("|---|---|---|")
    for name, samples in found.items():
        rates, cpus = [s["rate"] for s in samples], [s["cpu"] for s in samples]
        print(f"| {name} | {_cell(rates)} | {_cell(cpus)} |")


if __name__ == "__main__":
    main()
