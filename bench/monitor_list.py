"""`python -m bench.monitor_list`: the monitor's invocation list page over a big store.

Job: fill an embedded (SQLite) state store with `--rows` invocations (default
1,000,000; 10 tasks, every status, a parent for one in 100), then time whole HTTP
requests of the list page (routing, auth gate, query, template) to a `fleet monitor`:
the first page, a deep page (keyset cursor), and filters by task, by status, by
parent, by time range and by argument value. Prints p50/p95 per case, and the ratio of
each p50 to the same case on a 1,000-row store measured in the same run (keyset
pagination should keep it near 1). Target: p50 < 300 ms at 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fleet.codec import get_codec
from fleet.state import InvocationRecord
from fleet.state.sqlite import SQLiteStateStore
from fleet.status import HistoryEntry, Status
from fleet.testing._procs import ManagedProcess, free_port, wait_for_port

TASKS = [f"bench.tasks.t{i}" for i in range(10)]
STATUSES = [Status.SUCCESS] * 90 + [Status.FAILED] * 5 + [Status.PENDING] * 3 + [Status.RUNNING] * 2


def fill(store: SQLiteStateStore, rows: int, start: float) -> None:
    codec = get_codec("msgpack")
    batch: list[InvocationRecord] = []
    for i in range(rows):
        status = STATUSES[i % len(STATUSES)]
        at = start + i * 0.001
        batch.append(
            InvocationRecord(
                id=f"{i:032x}",
                task=TASKS[i % len(TASKS)],
                queue="default",
                args=codec.encode([[i, f"user-{i % 5000}"], {}]),
                codec="msgpack",
                status=status,
                history=(HistoryEntry(Status.PENDING, at, "", "submitted"),),
                parent=f"{(i // 100) * 100:032x}" if i % 100 else "",
                created=at,
                updated=at,
            )
        )
        if len(batch) == 20_000:
            store.register(batch)
            batch = []
    if batch:
        store.register(batch)


def cases(start: float, rows: int) -> dict[str, str]:
    mid = start + rows * 0.0005
    return {
        "first page": "/invocations",
        "task": f"/invocations?task={TASKS[3]}",
        "status FAILED": "/invocations?status=FAILED",
        "status RUNNING": "/invocations?status=RUNNING",
        "status CANCELLED": "/invocations?status=CANCELLED",  # none: a full window
        "parent": f"/invocations?parent={(rows // 200) * 100:032x}",
        "time range": f"/invocations?since={mid}&until={mid + 60}",
        "argument": '/invocations?arg="user-42"',
    }


def measure(url: str, rows: int, repeat: int, folder: Path) -> dict[str, list[float]]:
    """Time GETs of each case against a real `fleet monitor` process over HTTP."""
    port = free_port()
    env = {**os.environ, "FLEET__STATE_URL": url, "FLEET__BROKER_URL": url}
    argv = [sys.executable, "-m", "fleet", "monitor", "--port", str(port)]
    proc = ManagedProcess.start("fleet monitor", argv, log_path=folder / "monitor.log", env=env)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[float]] = {}
    try:
        began = time.perf_counter()
        wait_for_port("127.0.0.1", port, time.monotonic() + 300, proc)
        ready = time.perf_counter() - began
        print(f"monitor ready in {ready:.1f}s (its indexes built on {rows:,} rows)", flush=True)
        get(base + "/invocations")  # indexes made, caches warm
        deep = get(base + "/invocations?limit=500")
        next_link = deep.split('id="next" href="')[1].split('"')[0].replace("&amp;", "&")
        targets = cases(1_700_000_000.0, rows) | {"page 2 (cursor)": next_link, "overview": "/"}
        for name, path in targets.items():
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                get(base + path)
                times.append(time.perf_counter() - began)
            out[name] = times
    finally:
        proc.stop()
    return out


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
    return body.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for rows in (1000, args.rows):
            path = Path(tmp, f"{rows}.db")
            url = f"sqlite:///{path}"
            store = SQLiteStateStore(url)
            began = time.perf_counter()
            fill(store, rows, 1_700_000_000.0)
            store.close()
            print(f"filled {rows:,} rows in {time.perf_counter() - began:.1f}s", flush=True)
            results[rows] = measure(url, rows, args.repeat, Path(tmp))
        small, big = results[1000], results[args.rows]
        print(f"\nlist page, {args.rows:,} invocations (cpus {os.cpu_count()}):")
        print(f"{'case':<18} {'p50 ms':>8} {'p95 ms':>8} {'vs 1k rows':>10}  target p50 < 300 ms")
        for name, times in big.items():
            p50 = statistics.median(times) * 1000
            p95 = sorted(times)[int(len(times) * 0.95) - 1] * 1000
            ratio = p50 / (statistics.median(small[name]) * 1000)
            verdict = "ok" if p50 < 300 else "MISSED"
            if name == "overview":
                verdict = "(not the list page: counts every status)"
            print(f"{name:<18} {p50:>8.1f} {p95:>8.1f} {ratio:>9.2f}x  {verdict}")


if __name__ == "__main__":
    main()
