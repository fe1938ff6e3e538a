"""`fleet queues declare|status|purge`: create the configured queues, show their depth,
drop the ready messages of one (asking first: `--yes` for scripts).

Also the one place that says what an operator should notice about a queue
(`queue_notes`), shared with `fleet status`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleet.broker import QueueStats


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    parser = sub.add_parser("queues", help="declare queues or show their status")
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    declare = actions.add_parser("declare", help="create every configured queue (idempotent)")
    add_app_option(declare)
    declare.set_defaults(handler=declare_queues)
    status = actions.add_parser("status", help="depth, consumers and dead letters per queue")
    add_app_option(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=queue_status)
    purge = actions.add_parser("purge", help="drop every ready message of a queue (asks first)")
    add_app_option(purge)
    purge.add_argument("name", help="the queue (one defined in the queues file)")
    purge.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    purge.set_defaults(handler=purge_queue)


def declare_queues(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    try:
        specs = [app.queues.get(name) for name in app.queues.names()]
        app.runtime().broker.declare(specs)
        for spec in specs:
            dead = f", dead letters to {spec.dead_letter_queue}" if spec.dead_letter else ""
            print(f"declared {spec.name} ({spec.type}, delivery limit {spec.delivery_limit}{dead})")
    finally:
        app.close()
    return 0


def queue_status(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    try:
        broker = app.runtime().broker
        if args.json:
            rows = [broker.stats(name) for name in app.queues.names()]
            print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
            return 0
        print(f"{'queue':<24} {'ready':>8} {'unacked':>8} {'consumers':>9} {'dead':>8}")
        for name in app.queues.names():
            stats = broker.stats(name)
            notes = "  ".join(queue_notes(stats, defined=True))
            print(
                f"{name:<24} {stats.ready:>8} {unacked(stats):>8} {stats.consumers:>9} "
                f"{stats.dead:>8}  {notes}".rstrip()
            )
    finally:
        app.close()
    return 0


def purge_queue(args: argparse.Namespace) -> int:
    """Drop the ready messages of one defined queue once the operator confirmed.

    Their invocations stay PENDING in the state store: recovery publishes them again only
    if no publish of them was ever confirmed, so purged work does not run (cancel it with
    `fleet invocations cancel` to say so in its history)."""
    from fleet.cli import EXIT_USAGE, load

    app = load(args.app)
    try:
        app.queues.check([args.name], "fleet queues purge")
        broker = app.runtime().broker
        ready = broker.stats(args.name).ready
        if not args.yes:
            if not sys.stdin.isatty():
                print(
                    f"fleet queues purge: would drop {ready} ready message(s) of {args.name!r}; "
                    "pass --yes to confirm (no terminal to ask)",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            answer = input(f"Drop the {ready} ready message(s) of queue {args.name!r}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing dropped")
                return 1
        dropped = broker.purge(args.name)
        print(f"dropped {dropped} message(s) from {args.name}")
    finally:
        app.close()
    return 0


def unacked(stats: QueueStats) -> str:
    """The unacked count, or '-' where the broker cannot tell (-1)."""
    return "-" if stats.unacked < 0 else str(stats.unacked)


def queue_notes(stats: QueueStats, *, defined: bool, pending: int = 0) -> list[str]:
    """What is wrong with a queue, in words: undefined, undeclared, or unconsumed."""
    notes = []
    if not defined:
        notes.append("NOT DEFINED in the queues file")
    if not stats.declared:
        notes.append("not declared on the broker (fleet queues declare)")
    if stats.consumers == 0:
        waiting = max(stats.ready, pending)
        notes.append(f"NO CONSUMERS for {waiting} waiting" if waiting else "no consumers")
    return notes
