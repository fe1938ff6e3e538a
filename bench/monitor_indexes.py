"""`python -m bench.monitor_indexes`: what the monitor's indexes cost the worker's writes.

Job: the monitor adds five indexes to the embedded store's invocation table
(`fleet.monitor._reader.INDEXES`); every register and status change then updates them.
This measures the store operations of one invocation's hot path (register, claim to
RUNNING, commit SUCCESS: three statements) on two stores prefilled with `--rows`
invocations, one without and one with the monitor's indexes, interleaved A/B for
`--rounds`, and prints invocations/s of each and the ratio (with / without).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.monitor_list import fill
from fleet.monitor._reader_sqlite import SQLiteReader
from fleet.state import Change, InvocationRecord
from fleet.state.sqlite import SQLiteStateStore
from fleet.status import Status

PENDING = frozenset({Status.PENDING})
RUNNING = frozenset({Status.RUNNING})


def hot_path(store: SQLiteStateStore, n: int, tag: str) -> float:
    """Invocations per second through register, claim and commit, one at a time."""
    began = time.perf_counter()
    now = time.time()
    for i in range(n):
        rid = f"{tag}{i:024x}"
        store.register(
            [
                InvocationRecord(
                    id=rid,
                    task="bench.tasks.noop",
                    queue="default",
                    args=b"\x92\x90\x80",
                    codec="msgpack",
                    status=Status.PENDING,
                    created=now,
                    updated=now,
                )
            ]
        )
        store.apply([Change(rid, Status.RUNNING, PENDING, by="w", count_attempt=True)])
        store.apply([Change(rid, Status.SUCCESS, RUNNING, by="w", result=b"\xc0")])
    return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for name in ("without", "with"):
            store = SQLiteStateStore(f"sqlite:///{Path(tmp, name + '.db')}")
            fill(store, args.rows, time.time() - 3600)
            if name == "with":
                SQLiteReader(store)  # the monitor's indexes
            stores[name] = store
        rates: dict[str, list[float]] = {"without": [], "with": []}
        for r in range(args.rounds):
            order = ("without", "with") if r % 2 == 0 else ("with", "without")
            for name in order:
                rates[name].append(hot_path(stores[name], args.per_round, f"{r:02x}{name[:2]}"))
        for store in stores.values():
            store.close()
    base, monitored = statistics.median(rates["without"]), statistics.median(rates["with"])
    print(f"store hot path (register, claim, commit) over {args.rows:,} rows, median of")
    print(f"{args.rounds} interleaved rounds of {args.per_round}:")
    print(f"  without the monitor's indexes: {base:8.0f} invocations/s")
    print(f"  with them:                     {monitored:8.0f} invocations/s")
    print(f"  ratio with/without: {monitored / base:.2f}")


if __name__ == "__main__":
    main()
