"""`fleet config show`, `fleet status`, `fleet check`: look at a running fleet.

`fleet check` (the liveness probe) exits 0 while the fleet on this host is alive: its
live supervisor(s) and their current children beat within `dead_after` (see `judge`).
It exits 1 when they do not, 0 ("unknown") when the state store cannot be reached
(1 with `--strict`), and 3 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.state import StateStore

from fleet.state import RunnerRecord


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    config = sub.add_parser("config", help="show the effective settings")
    config_sub = config.add_subparsers(dest="action", required=True, metavar="action")
    show = config_sub.add_parser("show", help="print every setting and where it came from")
    add_app_option(show)
    show.set_defaults(handler=show_config)

    status = sub.add_parser("status", help="invocation counts, runners and queues")
    add_app_option(status)
    status.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (queues carry their backlog: ready + due)",
    )
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
    from fleet.cli.triggers import trigger_lines

    app = load(args.app)
    try:
        report = status_document(app)
        if getattr(args, "json", False):
            print(json.dumps(report, indent=2, sort_keys=True))
            return 0
        counts = report["invocations"]
        print("invocations: " + "  ".join(f"{s}={n}" for s, n in counts.items()))
        print("runners:")
        for r in report["runners"]:
            print(
                f"  {r['id']:<50} {r['kind']:<10} {r['state']:<7} beat {r['beat_age']:6.1f}s ago"
                f"  in hand {r['in_hand']}"
            )
        print("queues:")
        for name, q in report["queues"].items():
            shown = "-" if q["unacked"] < 0 else str(q["unacked"])
            print(
                f"  {name:<20} pending {q['pending']:<7} ready {q['ready']:<7} "
                f"unacked {shown:<7} consumers {q['consumers']:<4} dead {q['dead']} "
                f"backlog {q['backlog']['total']}"
                f"  {'  '.join(q['notes'])}".rstrip()
            )
        print("held by concurrency control (BLOCKED):")
        print("\n".join(held_lines(app.runtime().state)))
        print("triggers:")
        print("\n".join(trigger_lines(app.triggers)))
    finally:
        app.close()
    return 0


def status_document(app: Fleet) -> dict[str, Any]:
    """What `fleet status` shows and `fleet status --json` prints: invocation counts,
    runners, and per queue (keyed by name) its broker figures, the PENDING invocations
    waiting in it, operator notes and its backlog (`fleet.backlog`)."""
    from fleet.backlog import Backlog, backlogs
    from fleet.cli.queues import queue_notes

    runtime = app.runtime()
    now = time.time()
    runners = [
        {
            "id": r.id,
            "kind": r.kind,
            "host": r.host,
            "pid": r.pid,
            "beat_age": round(now - r.beat, 3),
            "state": "stopped"
            if r.stopped
            else ("stale" if now - r.beat > app.settings.dead_after else "live"),
            "in_hand": len(r.in_hand),
            "queues": list(r.queues),
        }
        for r in sorted(runtime.state.runners(), key=lambda r: r.id)
    ]
    defined = app.queues.names()
    pending = pending_by_queue(runtime.state)
    found = backlogs(app, now)
    names = [*found, *sorted(set(pending) - set(found))]
    queues: dict[str, dict[str, Any]] = {}
    for name in names:
        stats = runtime.broker.stats(name)
        waiting = pending.get(name, 0)
        item = found.get(name)
        queues[name] = {
            "name": name,
            "defined": name in defined,
            "declared": stats.declared,
            "ready": stats.ready,
            "unacked": stats.unacked,
            "consumers": stats.consumers,
            "dead": stats.dead,
            "pending": waiting,
            "notes": queue_notes(stats, defined=name in defined, pending=waiting),
            "backlog": (item or Backlog(name, max(0, stats.ready), 0)).to_json(),
        }
    return {
        "invocations": {s.value: n for s, n in runtime.state.counts().items()},
        "runners": runners,
        "queues": queues,
    }


def held_lines(state: StateStore) -> list[str]:
    """Per task, its BLOCKED invocations: blocked by a running limit, deferred by a
    rate limit (`fleet.concurrency.held_by_task`)."""
    from fleet.concurrency import held_by_task

    held = held_by_task(state)
    if not held:
        return ["  none"]
    return [
        f"  {task:<50} blocked {h.blocked:<6} deferred {h.deferred:<6}"
        + (f" other {h.other}" if h.other else "")
        for task, h in sorted(held.items())
    ]


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
    """Exit 0 while this host's fleet is alive, 1 when it is not (see `judge`); a
    configuration error (bad URL, bad option) is never "unknown": it exits 3."""
    from fleet.cli import load
    from fleet.errors import ConfigError

    app = load(args.app)
    now = time.time()
    try:
        runners = app.runtime().state.runners()
    except ConfigError:
        raise  # the CLI prints it and exits 3: restarting cannot fix a wrong setting
    except Exception as exc:
        # The workers may be fine and just waiting for the store: restarting them (what a
        # failing liveness probe does) would not help, so only --strict fails here.
        print(f"unknown: state store unreachable: {exc}")
        return 1 if args.strict else 0
    finally:
        app.close()
    problems, judged = judge(runners, args.host, now - app.settings.dead_after, now)
    for problem in problems:
        print(f"unhealthy: {problem}")
    if problems:
        return 1
    print(f"healthy: {judged} runner(s) on {args.host}")
    return 0


def judge(
    runners: list[RunnerRecord], host: str, horizon: float, now: float
) -> tuple[list[str], int]:
    """What is wrong with the fleet on `host`, and how many runners were judged.

    Only what runs now is judged: the supervisors of the host that still beat (one that
    stopped beating long ago without saying so, e.g. killed with its container, is
    history, as long as a newer one beats) and the children each lists. A child the
    supervisor replaced is marked stopped by it, so a killed child counts only until
    its replacement beats. Worker processes without a supervisor (`WorkerProcess` run
    directly) are judged by their own heartbeats.
    """
    here = [r for r in runners if r.host == host and not r.stopped]
    by_id = {r.id: r for r in runners}
    supervisors = [r for r in here if r.kind == "supervisor"]
    alone = [r for r in here if r.kind != "supervisor" and not r.parent]
    if not supervisors and not alone:
        return [f"no running fleet runner on host {host!r}"], 0
    live = [r for r in supervisors if r.beat >= horizon]
    if supervisors and not live:
        newest = max(supervisors, key=lambda r: r.beat)
        return [f"{newest.id} last beat {now - newest.beat:.1f}s ago"], 0
    judged = [*live, *alone]
    for supervisor in live:
        children = supervisor.info.get("children", [])
        children = children if isinstance(children, list) else []
        wanted = supervisor.info.get("processes", 0)
        if isinstance(wanted, int) and len(children) < wanted:
            judged.append(RunnerRecord(f"{supervisor.id} (starting)", "process", host, 0, 0.0))
        for child_id in children:
            child = by_id.get(str(child_id))
            if child is None:
                judged.append(RunnerRecord(str(child_id), "process", host, 0, 0.0))
            elif not child.stopped:  # stopped: replaced since the supervisor's last beat
                judged.append(child)
    problems = []
    for runner in judged:
        if not runner.beat:
            problems.append(f"{runner.id} has not reported yet")
        elif runner.beat < horizon:
            problems.append(f"{runner.id} last beat {now - runner.beat:.1f}s ago")
    return problems, len(judged)
