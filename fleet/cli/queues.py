"""`fleet queues declare|status`: create the configured queues, show their depth.

Also the one place that says what an operator should notice about a queue
(`queue_notes`), shared with `fleet status`.
"""

from __future__ import annotations

import argparse
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
    status.set_defaults(handler=queue_status)


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
