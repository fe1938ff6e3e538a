"""`fleet triggers list|show|fire|pause|resume|delete`: manage the triggers of an app.

Contract: each action loads the app (`--app`, whose module declares the tasks and
their triggers), works on `app.triggers` (the app's state store), prints plain lines
and closes the app. An unknown trigger id is a `TriggerNotFoundError` (one line, exit 1);
`delete` of an unknown id prints so and exits 1. `trigger_lines` is what `fleet
status` prints under "triggers:": per trigger its next cron time and last firing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleet.triggers import Firing, TriggerDefinition
    from fleet.triggers._registry import Triggers

ACTIONS = ("list", "show", "fire", "pause", "resume", "delete")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    triggers = sub.add_parser("triggers", help="list, show, fire, pause, resume, delete triggers")
    actions = triggers.add_subparsers(dest="action", required=True, metavar="action")
    helps = {
        "list": "every trigger: id, state, condition, target task",
        "show": "one trigger: definition, next cron time, latest firings",
        "fire": "fire a trigger now, whatever its condition",
        "pause": "stop a trigger from firing (kept, and resumable)",
        "resume": "let a paused trigger fire again",
        "delete": "remove a trigger and its firings",
    }
    for action in ACTIONS:
        parser = actions.add_parser(action, help=helps[action])
        if action != "list":
            parser.add_argument("id", help="the trigger's id (see `fleet triggers list`)")
        if action == "show":
            parser.add_argument("--limit", type=int, default=10, help="firings shown")
        if action == "list":
            parser.add_argument("--json", action="store_true", help="print JSON")
        add_app_option(parser)
        parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    try:
        return _ACTIONS[args.action](app.triggers, args)
    finally:
        app.close()


def _list(triggers: Triggers, args: argparse.Namespace) -> int:
    found = triggers.list()
    if args.json:
        rows = [
            {
                "id": d.id,
                "name": d.name,
                "kind": d.condition.kind.value,
                "cron": d.condition.cron or None,
                "task": d.task,
                "enabled": d.enabled,
                "declared": d.declared,
            }
            for d in found
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for d in found:
        print(describe(d))
    if not found:
        print("no triggers")
    return 0


def _show(triggers: Triggers, args: argparse.Namespace) -> int:
    status = triggers.show(args.id, limit=args.limit)
    d = status.definition
    print(describe(d))
    print(f"  name: {d.name}")
    print(f"  created: {when(d.created)}  declared on the task: {'yes' if d.declared else 'no'}")
    if d.derive:
        print("  derived: " + ", ".join(f"{k}={v}" for k, v in d.derive.items()))
    if d.function:
        print(f"  function: {d.function}")
    if status.next_time is not None:
        print(f"  next: {when(status.next_time)}")
    print(f"  firings ({len(status.firings)} shown, newest first):")
    for firing in status.firings:
        print("    " + firing_line(firing))
    return 0


def _fire(triggers: Triggers, args: argparse.Namespace) -> int:
    started = triggers.fire(args.id)
    if started is None:
        latest = triggers.show(args.id, limit=1).firings
        print(f"{args.id}: started nothing: {latest[0].error if latest else 'unknown'}")
        return 1
    print(f"{args.id}: started {started}")
    return 0


def _pause(triggers: Triggers, args: argparse.Namespace) -> int:
    print(describe(triggers.pause(args.id)))
    return 0


def _resume(triggers: Triggers, args: argparse.Namespace) -> int:
    print(describe(triggers.resume(args.id)))
    return 0


def _delete(triggers: Triggers, args: argparse.Namespace) -> int:
    if triggers.remove(args.id):
        print(f"{args.id}: deleted")
        return 0
    print(f"{args.id}: no such trigger")
    return 1


_ACTIONS: dict[str, Callable[[Triggers, argparse.Namespace], int]] = {
    "list": _list,
    "show": _show,
    "fire": _fire,
    "pause": _pause,
    "resume": _resume,
    "delete": _delete,
}


def describe(d: TriggerDefinition) -> str:
    """One line: id, state, condition, target."""
    from fleet.triggers import Kind

    cond = d.condition
    if cond.kind is Kind.CRON:
        what = f"cron {cond.cron!r}" + (f" {cond.timezone}" if cond.timezone else "")
    else:
        what = d.name
    state = "active" if d.enabled else "paused"
    return f"{d.id}  {state:<6}  {cond.kind.value:<9}  {what}  -> {d.task}"


def firing_line(f: Firing) -> str:
    started = f.invocation or "-"
    outcome = f"error: {f.error}" if f.error else ("pending" if f.pending else "started")
    return f"{when(f.fired_at)}  {f.key}  {f.source}  -> {started}  {outcome}"


def when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds") if at else "-"


def trigger_lines(triggers: Triggers) -> list[str]:
    """Per trigger: its line, next cron time and last firing (for `fleet status`)."""
    lines = []
    for d in triggers.list():
        status = triggers.show(d.id, limit=1)
        upcoming = f"next {when(status.next_time)}" if status.next_time is not None else ""
        last = f"last {firing_line(status.firings[0])}" if status.firings else "never fired"
        lines.append(f"  {describe(d)}")
        lines.append(f"      {upcoming + '  ' if upcoming else ''}{last}")
    return lines or ["  none"]


__all__ = ["add_parser", "describe", "firing_line", "trigger_lines", "when"]
