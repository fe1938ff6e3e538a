"""MongoDB commands per invocation end to end: RabbitMQ, MongoDB and `fleet worker`.

Usage: `python -m bench.mongo_e2e [--calls N] [--runs K] [--processes P]`

Job: start a RabbitMQ node and a MongoDB-wire server of its own (`FLEET_TEST_MONGO_URL`,
else Docker's mongo:7, else SecantusDB), a real `fleet worker` with P processes
(default 2), and submit N single calls one at a time (default 300), each waited for.
Every process counts the commands it sends (`fleet.testing.mongo_commands`: the
producer in process, the workers on request); the difference over the calls, divided
by N, is the figure, broken down by kind (collection.command[.what]). Heartbeats,
leases, the leader's periodic scans and schema setup are paced by the clock, not by
invocations: reported apart and excluded. K runs (default 3), each on a fresh database
and worker; the median run is the figure. Only counts are printed, never timings.
Exit status 1 when the median misses the target (<= 3.0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.procs import REPO
from fleet.testing import mongo_commands
from fleet.testing.mongo import drop_database, mongo_server, with_database
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import WorkerCommand

TARGET = 3.0
MODULE = "bench.mongo_e2e_tasks"


def measure(
    calls: int, processes: int, broker: str, state: str, work: Path
) -> tuple[Counter[str], Counter[str]]:
    """Commands over `calls` single calls: (producer's, workers')."""
    import importlib

    producer = mongo_commands.install()  # before the app makes its client
    tasks = importlib.reload(importlib.import_module(MODULE))
    env = {mongo_commands.ENV: str(work), "FLEET__HEARTBEAT_INTERVAL": "1.0"}
    with WorkerCommand(f"{MODULE}:app", processes=processes, env=env, cwd=str(REPO)) as worker:
        worker.wait_consumers(tasks.app, processes)
        for i in range(5):  # warm up: every connection, schema and declaration made
            assert tasks.double(i).result(timeout=120) == 2 * i
        before = mongo_commands.collect(work, processes)
        producer.take()
        for i in range(calls):
            assert tasks.double(i).result(timeout=120) == 2 * i
        mine = producer.take()
        theirs = mongo_commands.collect(work, processes)
        theirs.subtract(before)
    tasks.app.close()  # what closing sends (clearing unsettled deadlines) counts too
    mine.update(producer.take())
    return mine, +theirs


def run(args: argparse.Namespace, rabbitmq: str, mongo: str) -> list[dict[str, Any]]:
    rows = []
    for _ in range(args.runs):
        state = with_database(mongo, f"bench_e2e_{uuid.uuid4().hex[:8]}")
        os.environ.update(
            {
                "FLEET__BROKER_URL": rabbitmq,
                "FLEET__STATE_URL": state,
                "FLEET__CONNECT_TIMEOUT": "30",
            }
        )
        try:
            with tempfile.TemporaryDirectory(prefix="fleet-e2e-") as work:
                mine, theirs = measure(args.calls, args.processes, rabbitmq, state, Path(work))
        finally:
            drop_database(state)
        both = mine + theirs
        rows.append(
            {
                "producer": mongo_commands.per_invocation(mine, args.calls),
                "workers": mongo_commands.per_invocation(theirs, args.calls),
                "all": mongo_commands.per_invocation(both, args.calls),
                "background": {
                    k: v for k, v in sorted(both.items()) if mongo_commands.is_background(k)
                },
            }
        )
    return rows


def report(rows: list[dict[str, Any]], calls: int, processes: int, kind: str) -> bool:
    print(
        f"MongoDB-wire server: {kind}; RabbitMQ; `fleet worker --processes {processes}`; "
        f"{calls} single calls one at a time per run. Command counts only."
    )
    print()
    kinds = sorted({k for row in rows for k in row["all"] if k != "total"})
    print("| run | " + " | ".join(kinds) + " | producer | workers | run total |")
    print("|" + "---|" * (len(kinds) + 4))
    for n, row in enumerate(rows, 1):
        cells = [f"{row['all'].get(k, 0.0):.3f}" for k in kinds]
        cells += [f"{row['producer']['total']:.3f}", f"{row['workers']['total']:.3f}"]
        print(f"| {n} | " + " | ".join(cells) + f" | {row['all']['total']:.3f} |")
    median = statistics.median(row["all"]["total"] for row in rows)
    ok = median <= TARGET
    print()
    print("| mode | per invocation | target |")
    print("|---|---|---|")
    print(
        f"| single call end to end ({processes} worker processes), median of {len(rows)} | "
        f"{median:.3f} | <= {TARGET:g} {'ok' if ok else 'MISSED'} |"
    )
    print()
    print("Background in the same runs (heartbeats, leases, leader scans, setup; excluded):")
    for n, row in enumerate(rows, 1):
        print(f"- run {n}: {row['background'] or 'none'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mongo_e2e")
    parser.add_argument("--calls", type=int, default=300, help="single calls per run")
    parser.add_argument("--runs", type=int, default=3, help="runs (the median is reported)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)
    with RabbitMQServer() as rabbit, mongo_server() as mongo:
        rows = run(args, rabbit.url, mongo.url)
        ok = report(rows, args.calls, args.processes, mongo.kind)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
