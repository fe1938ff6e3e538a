"""`fleet deadletters list|requeue|purge QUEUE`: inspect and re-drive dead letters."""

from __future__ import annotations

import argparse
import time


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    parser = sub.add_parser("deadletters", help="inspect, requeue or purge dead letters")
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    for name, handler, text in (
        ("list", list_letters, "show the oldest dead letters of a queue"),
        ("requeue", requeue_letters, "move dead letters back to their queue"),
        ("purge", purge_letters, "delete the dead letters of a queue"),
    ):
        action = actions.add_parser(name, help=text)
        add_app_option(action)
        action.add_argument("queue", help="the task queue (not the .dead queue)")
        if name == "list":
            action.add_argument("--limit", type=int, default=20)
        if name == "requeue":
            action.add_argument(
                "--id",
                action="append",
                dest="ids",
                default=None,
                help="only these dead letters (repeatable; default all)",
            )
        action.set_defaults(handler=handler)


def list_letters(args: argparse.Namespace) -> int:
    from fleet._envelope import unpack
    from fleet.cli import load
    from fleet.errors import SerializationError

    app = load(args.app)
    try:
        letters = app.runtime().broker.dead_letters(args.queue, args.limit)
    finally:
        app.close()
    if not letters:
        print(f"no dead letters in {args.queue}")
    for letter in letters:
        try:
            envelope = unpack(letter.body)
            what = f"{envelope.task} invocation {envelope.id}"
        except SerializationError:
            what = f"{len(letter.body)} undecodable bytes {letter.body[:24]!r}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.at)) if letter.at else "?"
        print(f"{letter.id}  {when}  {what}\n    reason: {letter.reason}")
    return 0


def requeue_letters(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    try:
        moved = app.runtime().broker.redrive(args.queue, args.ids)
    finally:
        app.close()
    print(f"requeued {moved} dead letter(s) to {args.queue}")
    return 0


def purge_letters(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    try:
        dropped = app.runtime().broker.purge_dead(args.queue)
    finally:
        app.close()
    print(f"purged {dropped} dead letter(s) of {args.queue}")
    return 0
