"""MongoDB commands per invocation on fleet's hot path, counted with a command listener.

Usage: `python -m bench.mongo_roundtrips [--single N] [--rounds K] [--batch B]`

Job: run real calls through the real framework (a `Fleet` app, a `WorkerProcess` on a
thread, the memory broker, `MongoStateStore`) and count every command pymongo sends
(`pymongo.monitoring.CommandListener`), attributed by the thread that sent it:
- hot path, per invocation: `register` (producer), `claim` (worker loop), `commit`
  (committer), `readback` (the find that settles a partly lost batch), and anything
  else sent from those threads or the task threads;
- background, reported apart: heartbeats, the waiters' fallback reads (one batched
  find per second while a caller waits), leases, schema setup.
Modes: single calls one at a time; `parallelize` of B items with a worker of B slots
(claims and commits in batches); the same with 8 slots (claims in batches of 8).
The server is `FLEET_TEST_MONGO_URL`, else Docker's mongo:7, else SecantusDB (a slow
Python stand-in): only command counts are printed, never timings. Exit status 1 when
a target is missed (<= 3 per single invocation, <= 1.5 in batches).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from pymongo import monitoring

from fleet.testing.mongo_commands import Commands

HOT = {"register", "claim", "commit", "readback", "other hot"}


def classify(name: str, command: Any, thread: str) -> str:
    target = command.get(name) if isinstance(command.get(name), str) else ""
    if name in ("createIndexes", "listIndexes", "collMod", "create", "listCollections"):
        return "setup"
    if thread.startswith("fleet-heartbeat") or target.endswith("runners"):
        return "heartbeat"
    if thread.startswith("fleet-waiter"):
        return "waiter fallback"
    if target.endswith("leases"):
        return "lease"
    if target.endswith("invocations"):
        if name == "insert":
            return "register"
        if name == "update":
            first = command["updates"][0]["u"]
            status = first.get("$set", {}).get("status")
            if status == "RUNNING" and "$inc" in first:
                return "claim"
            if status in ("SUCCESS", "FAILED", "RETRY"):
                return "commit"
        if name == "find" and command.get("projection") == {"history.op": 1}:
            return "readback"
    if name in ("endSessions", "hello", "isMaster", "ping", "buildInfo"):
        return "connection"
    return "other hot"


def double(x: int) -> int:
    return 2 * x


def run(args: argparse.Namespace, url: str, listener: Commands) -> list[dict[str, Any]]:
    from fleet import Fleet
    from fleet.broker import memory
    from fleet.testing.worker import running_worker

    rows = []
    for label, threads, calls in (
        ("single call, one at a time", 1, None),
        (f"parallelize({args.batch}), {args.batch} worker slots", args.batch, args.batch),
        (f"parallelize({args.batch}), 8 worker slots", 8, args.batch),
    ):
        broker = f"bench-mongo-{uuid.uuid4().hex[:8]}"
        app = Fleet(broker_url=f"memory://{broker}", state_url=url, heartbeat_interval=5.0)
        task = app.task(double)
        try:
            with running_worker(app, threads=threads):
                assert task(0).result(timeout=120) == 0  # warm up: connect, schema, declare
                listener.take()
                if calls is None:
                    invocations = args.single
                    for i in range(invocations):
                        assert task(i).result(timeout=120) == 2 * i
                else:
                    invocations = calls * args.rounds
                    for _ in range(args.rounds):
                        values = task.parallelize(range(calls)).results(timeout=300)
                        assert values == [2 * i for i in range(calls)]
                counts = listener.take()
        finally:
            app.close()
            memory.drop(broker)
        rows.append({"mode": label, "invocations": invocations, "counts": dict(counts)})
    return rows


def report(rows: list[dict[str, Any]], kind: str) -> bool:
    print(f"MongoDB-wire server: {kind}. Command counts only (timings are not measured).")
    print()
    head = ["mode", "invocations", "register", "claim", "commit", "readback", "other"]
    print("| " + " | ".join([*head, "hot path total", "per invocation", "target"]) + " |")
    print("|" + "---|" * (len(head) + 3))
    ok = True
    for row in rows:
        counts, n = row["counts"], row["invocations"]
        hot = sum(v for k, v in counts.items() if k in HOT)
        per = hot / n
        target = 3.0 if row["mode"].startswith("single") else 1.5
        ok = ok and per <= target
        cells = [row["mode"], n, *(counts.get(k, 0) for k in head[2:6]), counts.get("other hot", 0)]
        cells += [hot, f"{per:.3f}", f"<= {target:g} {'ok' if per <= target else 'MISSED'}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print()
    print("Background commands in the same runs (not per invocation):")
    for row in rows:
        extra = {k: v for k, v in sorted(row["counts"].items()) if k not in HOT}
        print(f"- {row['mode']}: {extra or 'none'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mongo_roundtrips")
    parser.add_argument("--single", type=int, default=50, help="single calls (default 50)")
    parser.add_argument("--batch", type=int, default=100, help="items per parallelize")
    parser.add_argument("--rounds", type=int, default=3, help="parallelize calls per mode")
    args = parser.parse_args(argv)
    listener = Commands(classify)
    monitoring.register(listener)  # every client made from now on reports to it
    from fleet.testing.mongo import mongo_server

    with mongo_server() as server:
        rows = run(args, server.url, listener)
        ok = report(rows, server.kind)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
