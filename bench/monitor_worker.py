"""`python -m bench.monitor_worker`: W1 on the embedded stack, with and without the
monitor's indexes on its store.

Job: end to end, what the indexes the monitor adds (`fleet.monitor._reader_sqlite`)
cost a real worker: two SQLite stores prefilled with `--rows` invocations, one with
the indexes; per round and per store, a child process starts `fleet worker` (2
processes x 4 threads) on it, warms up, and times `--n` no-op invocations submitted in
one batch until every result is back. Rounds alternate the order; prints the median
invocations/s of each and the ratio (with / without).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.monitor_list import fill


def child(n: int) -> None:
    """In a process whose FLEET__* name the store: one timed W1 batch."""
    from bench import tasks
    from fleet.testing.worker import WorkerCommand

    worker = WorkerCommand("bench.tasks:app", processes=2, threads=4).start()
    try:
        worker.wait_consumers(tasks.app, 2)
        tasks.noop.parallelize(range(200)).results(timeout=120)  # warm up
        began = time.perf_counter()
        values = tasks.noop.parallelize(range(n)).results(timeout=300)
        took = time.perf_counter() - began
        assert values == list(range(n))
        print(f"{n / took:.1f}")
    finally:
        worker.stop()
        tasks.app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.n)
        return
    from fleet.monitor._reader_sqlite import SQLiteReader
    from fleet.state.sqlite import SQLiteStateStore

    with tempfile.TemporaryDirectory() as tmp:
        urls = {}
        for name in ("without", "with"):
            url = f"sqlite:///{Path(tmp, name, 'fleet.db')}"
            Path(tmp, name).mkdir()
            store = SQLiteStateStore(url)
            fill(store, args.rows, time.time() - 3600)
            if name == "with":
                SQLiteReader(store)
            store.close()
            urls[name] = url
        rates: dict[str, list[float]] = {"without": [], "with": []}
        for r in range(args.rounds):
            for name in ("without", "with") if r % 2 == 0 else ("with", "without"):
                env = {
                    **os.environ,
                    "FLEET__BROKER_URL": urls[name],
                    "FLEET__STATE_URL": urls[name],
                }
                argv = [sys.executable, "-m", "bench.monitor_worker", "--child", "--n", str(args.n)]
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                rates[name].append(float(out.stdout.strip().splitlines()[-1]))
    base, monitored = statistics.median(rates["without"]), statistics.median(rates["with"])
    print(f"W1 embedded, 2x4 worker, {args.n} no-ops, {args.rows:,} rows in the store,")
    print(f"median of {args.rounds} alternating rounds: without the monitor's indexes")
    print(f"{base:.0f}/s, with them {monitored:.0f}/s, ratio {monitored / base:.2f}")
    for name, values in rates.items():
        print(f"  {name:<8} " + " ".join(f"{v:.0f}" for v in values))


if __name__ == "__main__":
    main()
