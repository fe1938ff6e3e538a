"""`fleet config show`, `fleet status`, `fleet check`: look at a running fleet."""

from __future__ import annotations

import argparse
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleet.state import StateStore


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    config = sub.add_parser("config", help="show the effective settings")
    config_sub = config.add_subparsers(dest="action", required=True, metavar="action")
    show = config_sub.add_parser("show", help="print every setting and where it came from")
    add_app_option(show)
    show.set_defaults(handler=show_config)

    status = sub.add_parser("status", help="invocation counts, runners and queues")
    add_app_option(status)
    status.set_defaults(handler=show_status)

    check = sub.add_parser("check", help="exit 1 when this host's heartbeats are stale")
    add_app_option(check)
    check.add_argument("--host", default=socket.gethostname(), help="host to check")
    check.add_argument(
        "--strict", action="store_true", help="also fail when the state store is unreachable"
    )
    check.set_defaults(handler=check_health)


def show_config(args: argparse.Namespace) -> int:
    from fleet.cli import load
    from fleet.config import describe

    print(describe(load(args.app).loaded))
    return 0


def show_status(args: argparse.Namespace) -> int:
    from fleet.cli import load
    from fleet.cli.queues import queue_notes, unacked

    app = load(args.app)
    runtime = app.runtime()
    counts = runtime.state.counts()
    print("invocations: " + "  ".join(f"{s.value}={n}" for s, n in counts.items()))
    now = time.time()
    print("runners:")
    for runner in sorted(runtime.state.runners(), key=lambda r: r.id):
        age = now - runner.beat
        state = (
            "stopped" if runner.stopped else ("stale" if age > app.settings.dead_after else "live")
        )
        print(
            f"  {runner.id:<50} {runner.kind:<10} {state:<7} beat {age:6.1f}s ago"
            f"  in hand {len(runner.in_hand)}"
        )
    print("queues:")
    defined = app.queues.names()
    pending = pending_by_queue(runtime.state)
    for name in [*defined, *sorted(set(pending) - set(defined))]:
        stats = runtime.broker.stats(name)
        notes = "  ".join(queue_notes(stats, defined=name in defined, pending=pending.get(name, 0)))
        print(
            f"  {name:<20} pending {pending.get(name, 0):<7} ready {stats.ready:<7} "
            f"unacked {unacked(stats):<7} consumers {stats.consumers:<4} dead {stats.dead}"
            f"  {notes}".rstrip()
        )
    app.close()
    return 0


PENDING_SAMPLE = 10_000
"""PENDING invocations `fleet status` reads to find the queues they wait in."""


def pending_by_queue(state: StateStore) -> dict[str, int]:
    """PENDING invocations per queue, over the oldest `PENDING_SAMPLE` of them (so a
    queue nobody consumes shows up even when it is not defined)."""
    from fleet.state import Query
    from fleet.status import Status

    found: dict[str, int] = {}
    for record in state.find(Query(statuses=(Status.PENDING,), limit=PENDING_SAMPLE)):
        found[record.queue] = found.get(record.queue, 0) + 1
    return found


def check_health(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    now = time.time()
    horizon = now - app.settings.dead_after
    try:
        runners = app.runtime().state.runners()
    except Exception as exc:
        # The workers may be fine and just waiting for the store: restarting them (what a
        # failing liveness probe does) would not help, so only --strict fails here.
        print(f"unknown: state store unreachable: {exc}")
        return 1 if args.strict else 0
    finally:
        app.close()
    mine = [r for r in runners if r.host == args.host and not r.stopped]
    if not mine:
        print(f"unhealthy: no running fleet runner on host {args.host!r}")
        return 1
    stale = [r for r in mine if r.beat < horizon]
    if stale:
        for runner in stale:
            print(f"unhealthy: {runner.id} last beat {now - runner.beat:.1f}s ago")
        return 1
    print(f"healthy: {len(mine)} runner(s) on {args.host}")
    return 0
