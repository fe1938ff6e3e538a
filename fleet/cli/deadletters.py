"""`fleet deadletters list|requeue|purge QUEUE`: inspect and re-drive dead letters.

Contract: `requeue` moves a letter back only when its invocation will run (see
`requeue`); every letter it leaves is named, with its invocation and the reason, and
the command then exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleet import _transitions
from fleet._envelope import unpack
from fleet.errors import SerializationError
from fleet.state import Change, InvocationRecord
from fleet.status import Status

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.broker import DeadLetter


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
            action.add_argument("--json", action="store_true", help="print JSON")
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
    from fleet.cli import load

    app = load(args.app)
    try:
        letters = app.runtime().broker.dead_letters(args.queue, args.limit)
    finally:
        app.close()
    if args.json:
        print(json.dumps([_letter_json(letter) for letter in letters], indent=2))
        return 0
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


def _letter_json(letter: DeadLetter) -> dict[str, object]:
    """A dead letter as JSON: its invocation and task when the body is an envelope."""
    task: str | None
    invocation: str | None
    try:
        envelope = unpack(letter.body)
        task, invocation = envelope.task, envelope.id
    except SerializationError:
        task = invocation = None
    return {
        "id": letter.id,
        "queue": letter.queue,
        "at": letter.at,
        "reason": letter.reason,
        "task": task,
        "invocation": invocation,
        "bytes": len(letter.body),
    }


def requeue_letters(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    try:
        moved, refused = requeue(app, args.queue, args.ids)
    finally:
        app.close()
    for line in refused:
        print(f"not requeued: {line}", file=sys.stderr)
    print(f"requeued {moved} dead letter(s) to {args.queue}")
    return 1 if refused else 0


REQUEUE_LIMIT = 10_000
"""Dead letters looked at by one `requeue` (run it again for more)."""


def requeue(app: Fleet, queue: str, ids: Sequence[str] | None = None) -> tuple[int, list[str]]:
    """Move dead letters of `queue` (all, or those with `ids`) back to it, each one only
    if its invocation will run: a FAILED record (dead-lettered as an unknown task,
    undecodable or poison) is first reset to PENDING, an operator's re-drive recorded
    in its history; a PENDING one is requeued as it is. Letters whose invocation is
    finished otherwise, held, running, or has no record stay dead-lettered. Letters
    that cannot be decoded here are moved as they are (a newer worker may read them).

    Returns:
        How many letters were moved, and one line per letter left where it is, naming
        the letter, its invocation and why.
    """
    runtime = app.runtime()
    letters = runtime.broker.dead_letters(queue, REQUEUE_LIMIT)
    wanted = None if ids is None else set(ids)
    if wanted is not None:
        letters = [letter for letter in letters if letter.id in wanted]
    refused = [
        f"no dead letter {i!r} in {queue}.dead"
        for i in sorted((wanted or set()) - {x.id for x in letters})
    ]
    by_invocation: dict[str, list[DeadLetter]] = {}
    opaque: list[str] = []
    for letter in letters:
        try:
            by_invocation.setdefault(unpack(letter.body).id, []).append(letter)
        except SerializationError:
            opaque.append(letter.id)  # no record to judge by: the operator's call
    records = {r.id: r for r in runtime.state.get(list(by_invocation))}
    now = time.time()
    resets: list[Change] = []
    ready: list[DeadLetter] = []
    for invocation, found in by_invocation.items():
        record = records.get(invocation)
        why = _not_runnable(record)
        if why is not None:
            refused += [f"letter {x.id} (invocation {invocation}): {why}" for x in found]
            continue
        assert record is not None
        if record.status is Status.FAILED:
            resets.append(
                Change(
                    invocation,
                    Status.PENDING,
                    frozenset({Status.FAILED}),
                    note="requeued from the dead letters by an operator",
                    due=now + app.settings.pending_timeout,
                    redrive=True,
                )
            )
        ready += found
    names = [records[ch.id].task for ch in resets]
    done = _transitions.apply(runtime.state, resets, app.dispatcher, names) if resets else []
    lost = {ch.id for ch, ok in zip(resets, done, strict=True) if not ok}
    refused += [
        f"letter {x.id} (invocation {x_id}): its record changed meanwhile; try again"
        for x_id in sorted(lost)
        for x in by_invocation[x_id]
    ]
    chosen = opaque + [x.id for x in ready if unpack(x.body).id not in lost]
    moved = runtime.broker.redrive(queue, chosen) if chosen else 0
    if len(letters) >= REQUEUE_LIMIT:
        refused.append(f"only the oldest {REQUEUE_LIMIT} letters were looked at; run it again")
    return moved, refused


def _not_runnable(record: InvocationRecord | None) -> str | None:
    """Why a letter for `record` would not run if requeued (None: it would)."""
    if record is None:
        return "no invocation record (expired, purged or never written): it would not run"
    if record.status in (Status.PENDING, Status.FAILED):
        return None
    if record.status.final:
        return f"the invocation is {record.status.value} already"
    if record.status.owned:
        return f"the invocation is {record.status.value} under {record.owner!r}"
    return f"the invocation is {record.status.value}; it is released when due"


def purge_letters(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    try:
        dropped = app.runtime().broker.purge_dead(args.queue)
    finally:
        app.close()
    print(f"purged {dropped} dead letter(s) of {args.queue}")
    return 0
