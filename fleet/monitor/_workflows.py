"""The monitor's workflow pages: the list of workflow runs and one run's page.

Job: list the invocations of the app's workflow tasks (`@app.workflow`) newest first,
through the reader (one task-index walk per workflow, keyset pages), and show one run:
its invocation's outcome, its recorded history (`fleet.workflows.HistoryStore`) as
readable steps with each child's current status, its workflow data, the signals it
took or has waiting, and its sub-workflows.

Contract: handlers are `(Monitor, Request) -> (template, context)` and read only. An
unknown run (or an invocation that is neither a workflow nor has a history) raises
`Missing` (a 404 page); a history store that cannot be read is reported on the page
(`history_error`), never as a 500. What cannot be decoded is shown as such
(`fleet.monitor._events`). The monitor knows which tasks are workflows from the app
it loaded: a workflow its app does not define is not listed, though its page works.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request

from fleet.monitor import _events, _render
from fleet.monitor._pages import PAGE, Missing, parse_statuses, value_of
from fleet.monitor._reader import Filters, Page
from fleet.monitor._workflow_links import workflow_names
from fleet.state import InvocationRecord
from fleet.status import Status

if TYPE_CHECKING:
    from fleet.monitor._web import Monitor

log = logging.getLogger(__name__)
Context = tuple[str, dict[str, Any]]
STEPS = 1000
"""History events shown on a run's page at most (with their children's statuses)."""


def runs(m: Monitor, request: Request) -> Context:
    q = request.query_params
    raw = {k: q.get(k, "").strip() for k in ("workflow", "status")}
    names = workflow_names(m.fleet)
    if raw["workflow"] and raw["workflow"] not in names:
        raise ValueError(f"workflow={raw['workflow']!r}: not a workflow of this app")
    filters = Filters(
        task=raw["workflow"], tasks=tuple(names), statuses=parse_statuses(raw["status"])
    )
    after = q.get("after") or None
    limit = min(max(int(q.get("limit", PAGE)), 1), 500)
    started = time.perf_counter()
    # No workflow task: nothing to list (an empty task set would match every invocation).
    found = m.reader.page(filters, after, limit) if names else Page([], None)
    return "workflows.html", {
        "page": found,
        "filters": raw,
        "query": urlencode({k: v for k, v in raw.items() if v}),
        "after": after or "",
        "took_ms": (time.perf_counter() - started) * 1000,
        "workflows": names,
        "statuses": [s.value for s in Status],
    }


def run(m: Monitor, request: Request) -> Context:
    run_id = request.path_params["run_id"]
    state = m.fleet.runtime().state
    found = state.get([run_id])
    if not found:
        raise Missing(f"no workflow run {run_id!r}: no invocation has this id")
    record = found[0]
    workflow = record.task in workflow_names(m.fleet)
    context: dict[str, Any] = {"r": record, "history_error": "", "steps": [], "data": []}
    context.update(signals=[], waiting=[], subruns=[], data_run="", steps_cut=False)
    try:
        _history(m, record, context)
    except Exception as exc:  # any store error: the page says so, the rest still shows
        log.warning("monitor: cannot read the workflow history of %s", run_id, exc_info=True)
        text = f"cannot read this run's history: {type(exc).__name__}: {exc}"
        context["history_error"] = _render.hide_secrets(text)
    if not workflow and not context["steps"] and not context["history_error"]:
        raise Missing(
            f"invocation {run_id} ({record.task}) is not a workflow run: "
            "its task is not a workflow of this app and it has no recorded history"
        )
    result = _render.decode(value_of(state, record.result), record.codec)
    context["result"], context["result_cut"] = _render.cut(result)
    return "workflow.html", context


def _history(m: Monitor, record: InvocationRecord, context: dict[str, Any]) -> None:
    handle = m.fleet.workflow_run(record.id)
    store = handle.ext.store()
    events = store.load(record.id)
    context["steps_cut"] = len(events) > STEPS
    events = events[:STEPS]
    child_ids = [i for e in events for i in e.ids]
    children = {r.id: r for r in m.fleet.runtime().state.get(child_ids)} if child_ids else {}
    names = set(workflow_names(m.fleet))
    codec = record.codec
    context["steps"] = [_events.describe(e, codec, children) for e in events]
    context["signals"] = _events.signals_taken(events, codec)
    context["waiting"] = _events.signals_waiting(store, record.id, events, codec)
    context["subruns"] = [
        children[i] for i in child_ids if i in children and children[i].task in names
    ]
    data_run = handle.run_id
    context["data_run"] = data_run
    context["data"] = [
        (key, *_render.cut(_render.decode(value, codec)))
        for key, value in sorted(store.data(data_run).items())
    ]


def full_data(m: Monitor, request: Request) -> Context:
    """One key of a run's workflow data, in full."""
    run_id, key = request.path_params["run_id"], request.path_params["key"]
    found = m.fleet.runtime().state.get([run_id])
    if not found:
        raise Missing(f"no workflow run {run_id!r}: no invocation has this id")
    handle = m.fleet.workflow_run(run_id)
    data = handle.ext.store().data(handle.run_id)
    if key not in data:
        raise Missing(f"workflow run {run_id} has no data key {key!r}")
    text = _render.decode(data[key], found[0].codec)
    return "value.html", {"r": found[0], "part": f"workflow data {key!r}", "text": text}
