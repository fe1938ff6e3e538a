"""`fleet invocations list|show|cancel|retry`: look at and act on single invocations.

Job: give an operator the invocations behind the counts of `fleet status`: find them by
task, status and age, read one whole (arguments size, owner, attempts, history, error
with traceback), cancel one, or run a failed or cancelled one again.

Contract: `list` prints the newest matches first (at most `--limit`), `--json` prints
the same as one JSON document; `show ID` prints one record, exit 1 when there is none;
`cancel ID` exits 0 when it was cancelled, 1 when it had already finished; `retry ID`
moves a FAILED or CANCELLED invocation back to PENDING (an operator's re-drive, recorded
in its history, `fleet.status.REDRIVES`) and publishes it again, and exits 1 with the
reason for any other status. Nothing is ever changed by `list` or `show`.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fleet.status import Status

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.state import InvocationRecord

RETRYABLE = (Status.FAILED, Status.CANCELLED)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    parser = sub.add_parser("invocations", help="list, show, cancel or retry invocations")
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")

    listing = actions.add_parser("list", help="invocations by task, status and age")
    add_app_option(listing)
    listing.add_argument("--task", help="only this task (its full name)")
    listing.add_argument(
        "--status", type=statuses, default=[], help="only these statuses, e.g. FAILED,RETRY"
    )
    listing.add_argument("--since", type=duration, help="updated within, e.g. 90s, 15m, 2h, 1d")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=list_invocations)

    for name, handler, text in (
        ("show", show_invocation, "one invocation with its history and error"),
        ("cancel", cancel_invocation, "cancel a pending or running invocation"),
        ("retry", retry_invocation, "run a failed or cancelled invocation again"),
    ):
        action = actions.add_parser(name, help=text)
        add_app_option(action)
        action.add_argument("id", help="the invocation id")
        if name == "show":
            action.add_argument("--json", action="store_true", help="print JSON")
        action.set_defaults(handler=handler)


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `2h` or `1d`."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def statuses(text: str) -> list[Status]:
    """Statuses from `FAILED,retry` (any case)."""
    found = []
    for name in (s.strip().upper() for s in text.split(",") if s.strip()):
        try:
            found.append(Status(name))
        except ValueError:
            known = ", ".join(s.value for s in Status)
            raise argparse.ArgumentTypeError(f"unknown status {name!r}; known: {known}") from None
    return found


def list_invocations(args: argparse.Namespace) -> int:
    from fleet.cli import load
    from fleet.state import Query

    app = load(args.app)
    query = Query(statuses=args.status, task=args.task, limit=max(1, args.limit))
    records = app.runtime().state.find(query)
    if args.since is not None:
        horizon = time.time() - args.since
        records = [r for r in records if r.updated >= horizon]
    records.sort(key=lambda r: r.updated, reverse=True)
    if args.json:
        print(json.dumps([summary(r) for r in records], indent=2))
        return 0
    now = time.time()
    print(f"{'id':<26} {'task':<40} {'status':<9} {'att':>3} {'updated':>9}  owner")
    for r in records:
        age = f"{now - r.updated:.0f}s ago"
        print(f"{r.id:<26} {r.task:<40} {r.status.value:<9} {r.attempt:>3} {age:>9}  {r.owner}")
    return 0


def summary(record: InvocationRecord) -> dict[str, Any]:
    """The fields of a record an operator reads, as JSON-ready values."""
    return {
        "id": record.id,
        "task": record.task,
        "queue": record.queue,
        "status": record.status.value,
        "owner": record.owner,
        "attempt": record.attempt,
        "parent": record.parent,
        "created": record.created,
        "updated": record.updated,
        "due": record.due,
    }


def show_invocation(args: argparse.Namespace) -> int:
    from fleet.cli import load

    found = load(args.app).runtime().state.get([args.id])
    if not found:
        print(f"no invocation {args.id!r} in the state store")
        return 1
    record = found[0]
    details = summary(record) | {
        "arguments_bytes": len(record.args),
        "waits_on": list(record.waits_on),
        "error": asdict(record.error) if record.error else None,
        "history": [
            {"status": h.status.value, "at": h.at, "by": h.owner, "note": h.note}
            for h in record.history
        ],
    }
    if args.json:
        error = details["error"]
        if error is not None:
            error.pop("args", None)  # encoded bytes: not JSON
        print(json.dumps(details, indent=2))
        return 0
    for key in ("id", "task", "queue", "status", "owner", "attempt", "parent", "due"):
        print(f"{key + ':':<10} {details[key]}")
    print(f"{'args:':<10} {details['arguments_bytes']} bytes ({record.codec})")
    print("history:")
    for h in record.history:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.at))
        print(f"  {stamp}.{int(h.at % 1 * 1000):03d}  {h.status.value:<9} {h.owner}  {h.note}")
    if record.error is not None:
        print(f"error:     {record.error.type}: {record.error.message}")
        if record.error.traceback:
            print(record.error.traceback.rstrip())
    return 0


def cancel_invocation(args: argparse.Namespace) -> int:
    from fleet.cli import load

    if load(args.app).cancel(args.id, by="fleet invocations cancel"):
        print(f"cancelled {args.id}")
        return 0
    print(f"{args.id} had already finished")
    return 1


def retry_invocation(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    why = retry(app, args.id)
    if why is not None:
        print(f"fleet invocations retry: {why}")
        return 1
    print(f"{args.id} is PENDING again and published")
    return 0


def retry(app: Fleet, invocation_id: str) -> str | None:
    """Run a FAILED or CANCELLED invocation again; None when done, else why not."""
    from fleet._envelope import from_record, pack
    from fleet.broker import Message
    from fleet.signing import signer
    from fleet.state import Change

    state = app.runtime().state
    found = state.get([invocation_id])
    if not found:
        return f"no invocation {invocation_id!r} in the state store"
    record = found[0]
    if record.status not in RETRYABLE:
        allowed = " or ".join(s.value for s in RETRYABLE)
        return f"{invocation_id} is {record.status.value}; only {allowed} invocations are retried"
    reset = Change(
        invocation_id,
        Status.PENDING,
        frozenset({record.status}),
        by="fleet invocations retry",
        note=f"retried by an operator (was {record.status.value})",
        due=time.time() + app.settings.pending_timeout,
        redrive=True,
    )
    if not state.apply([reset])[0]:
        return f"{invocation_id} changed meanwhile; try again"
    app.forget(invocation_id)  # an outcome this process holds is no longer the last
    body = pack(from_record(record))
    app.publish([Message(record.queue, body, record.id, 0, signer(app.settings).headers(body))])
    return None
