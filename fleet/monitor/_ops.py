"""The monitor's operator pages and actions: runners, queues and dead letters, triggers,
the log explorer; cancel, retry, requeue, purge.

Job: show the fleet's moving parts and act on them through the same code as the CLI
(`Fleet.cancel`, `fleet.cli.invocations.retry`, `fleet.cli.deadletters.requeue`,
`Broker.purge_dead`), so a click and a command behave alike.

Contract: page handlers read only; action handlers run after the CSRF check (see
`_web.action`) and return the URL to show next with a `message` saying what happened.
Purge needs the form field `confirm` equal to the queue's name.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request

from fleet._envelope import unpack
from fleet.errors import FleetError, SerializationError
from fleet.monitor import _render
from fleet.monitor._reader import recovery_steps

if TYPE_CHECKING:
    from fleet.monitor._web import Monitor

Context = tuple[str, dict[str, Any]]
LOG_IDS = 500
"""Distinct ids looked up from one paste."""


def _back(path: str, message: str) -> str:
    return f"{path}?message={quote(message)}"


def runners(m: Monitor, request: Request) -> Context:
    now = time.time()
    state = m.fleet.runtime().state
    found = sorted(
        state.runners(), key=lambda r: (r.host, r.parent or r.id, r.kind != "supervisor")
    )
    dead_after = m.fleet.settings.dead_after
    rows = [
        {
            "r": r,
            "age": now - r.beat,
            "state": "stopped" if r.stopped else ("alive" if now - r.beat < dead_after else "DEAD"),
        }
        for r in found
    ]
    return "runners.html", {
        "rows": rows,
        "recoveries": [
            (s, recovery_steps(s.history)) for s in m.reader.recoveries(now - 86400, 50)
        ],
        "dead_after": dead_after,
    }


def queues(m: Monitor, request: Request) -> Context:
    broker = m.fleet.runtime().broker
    stats = [broker.stats(name) for name in m.fleet.queues.names()]
    return "queues.html", {"queues": stats}


def dead_letters(m: Monitor, request: Request) -> Context:
    name = request.path_params["name"]
    if name not in m.fleet.queues.names():
        raise ValueError(f"no queue {name!r} in the queues of this app")
    letters = []
    for letter in m.fleet.runtime().broker.dead_letters(name, 200):
        try:
            envelope = unpack(letter.body)
            what, invocation = envelope.task, envelope.id
        except SerializationError:
            what, invocation = f"{len(letter.body)} undecodable bytes", ""
        letters.append({"l": letter, "what": what, "invocation": invocation})
    return "dead.html", {"queue": name, "letters": letters}


def triggers(m: Monitor, request: Request) -> Context:
    from fleet.cli.triggers import describe

    try:
        registry = m.fleet.triggers
        shown = [registry.show(d.id, limit=5) for d in registry.list()]
    except FleetError as exc:
        return "triggers.html", {"triggers": [], "error": str(exc)}
    rows = [{"s": s, "line": describe(s.definition)} for s in shown]
    return "triggers.html", {"triggers": rows, "error": ""}


def logs(m: Monitor, request: Request) -> Context:
    return "logs.html", {"text": "", "lines": [], "found": {}}


def resolve_logs(m: Monitor, request: Request, form: FormData) -> Context:
    """Pasted log lines with every invocation id linked and its current state beside."""
    text = _render.hide_secrets(str(form.get("text") or ""))[:1_000_000]
    ids = list(dict.fromkeys(_render.IDS.findall(text)))[:LOG_IDS]
    records = {r.id: r for r in m.fleet.runtime().state.get(ids)} if ids else {}
    lines = []
    for line in text.splitlines():
        parts: list[tuple[str, str]] = []  # (text, id or "")
        last = 0
        for match in _render.IDS.finditer(line):
            parts.append((line[last : match.start()], ""))
            parts.append((match.group(0), match.group(0)))
            last = match.end()
        parts.append((line[last:], ""))
        lines.append(parts)
    return "logs.html", {"text": text, "lines": lines, "found": records}


def cancel(m: Monitor, request: Request, form: FormData) -> str:
    invocation_id = request.path_params["id"]
    done = m.fleet.cancel(invocation_id, by="fleet monitor")
    message = "cancelled" if done else "it had already finished; nothing to cancel"
    return _back(f"/invocations/{invocation_id}", message)


def retry(m: Monitor, request: Request, form: FormData) -> str:
    from fleet.cli.invocations import retry as retry_invocation

    invocation_id = request.path_params["id"]
    why = retry_invocation(m.fleet, invocation_id)
    return _back(f"/invocations/{invocation_id}", why or "PENDING again and published")


def requeue(m: Monitor, request: Request, form: FormData) -> str:
    from fleet.cli.deadletters import requeue as requeue_letters

    name = request.path_params["name"]
    ids = [str(i) for i in form.getlist("id")] or None
    moved, refused = requeue_letters(m.fleet, name, ids)
    message = f"requeued {moved} dead letter(s)" + (f"; not requeued: {refused}" if refused else "")
    return _back(f"/queues/{name}/dead", message)


def purge(m: Monitor, request: Request, form: FormData) -> str:
    name = request.path_params["name"]
    if str(form.get("confirm") or "") != name:
        return _back(f"/queues/{name}/dead", f"not purged: type the queue name {name!r} to confirm")
    dropped = m.fleet.runtime().broker.purge_dead(name)
    return _back(f"/queues/{name}/dead", f"purged {dropped} dead letter(s)")
