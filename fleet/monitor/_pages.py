"""The monitor's invocation pages: overview, list, detail, timeline.

Job: gather what each page shows from the state store (through the reader), the broker
and the app's queues, as template context.

Contract: each handler is `(Monitor, Request) -> (template, context)`, reads only, and
raises `ValueError` naming the parameter for bad query input (a status that does not
exist, a malformed time or cursor), or `Missing` for a subject that does not exist (a
404 page).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request

from fleet.monitor import _render, _workflow_links
from fleet.monitor._reader import Filters, Row, arg_needle
from fleet.state import InvocationRecord, StateStore, blob_key
from fleet.status import Status

if TYPE_CHECKING:
    from fleet.monitor._web import Monitor

Context = tuple[str, dict[str, Any]]
HOUR, BUCKETS = 3600.0, 12
PAGE = 50
OVERVIEW_TTL = 1.5
"""Seconds the overview's numbers are shared between viewers (it counts whole tables)."""
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Missing(LookupError):
    """What a page is about does not exist: a 404 page saying so."""


def overview(m: Monitor, request: Request) -> Context:
    return "overview.html", m.cached("overview", OVERVIEW_TTL, lambda: _overview(m))


def overview_live(m: Monitor, request: Request) -> Context:
    return "_overview_live.html", m.cached("overview", OVERVIEW_TTL, lambda: _overview(m))


def _overview(m: Monitor) -> dict[str, Any]:
    runtime = m.fleet.runtime()
    now = time.time()
    counts = runtime.state.counts()
    buckets = m.reader.finished(now - HOUR, HOUR / BUCKETS)
    ok = sum(a for a, _ in buckets.values())
    bad = sum(b for _, b in buckets.values())
    queues = [runtime.broker.stats(name) for name in m.fleet.queues.names()]
    dead_after = m.fleet.settings.dead_after
    live = [r for r in runtime.state.runners() if not r.stopped and now - r.beat < dead_after]
    return {
        "counts": [(s.value, counts.get(s, 0)) for s in Status],
        "total": sum(counts.values()),
        "bars": _render.chart(buckets, BUCKETS, 600, 120),
        "hour_ok": ok,
        "hour_failed": bad,
        "failure_rate": bad / (ok + bad) if ok + bad else 0.0,
        "queues": queues,
        "runners": sorted(live, key=lambda r: (r.host, r.kind, r.id)),
        "now": now,
        "store": runtime.state.url,
        "broker": runtime.broker.url,
    }


def filters_from(request: Request, codec: str = "msgpack") -> tuple[Filters, dict[str, str]]:
    """The filters in the query string, and the raw values to put back in the form."""
    q = request.query_params
    raw = {k: q.get(k, "").strip() for k in ("task", "status", "since", "until", "parent", "arg")}
    needle = b""
    if raw["arg"]:
        needle = arg_needle(raw["arg"], codec)
    filters = Filters(
        task=raw["task"],
        statuses=parse_statuses(raw["status"]),
        since=moment(raw["since"], "since"),
        until=moment(raw["until"], "until"),
        parent=raw["parent"],
        arg=needle,
    )
    return filters, raw


def parse_statuses(text: str) -> tuple[Status, ...]:
    """The statuses of a filter ('FAILED,RETRY' or 'failed retry')."""
    statuses: list[Status] = []
    for name in [s for s in text.replace(",", " ").split() if s]:
        try:
            statuses.append(Status(name.upper()))
        except ValueError:
            raise ValueError(f"unknown status {name!r} in the filter") from None
    return tuple(statuses)


def moment(text: str, name: str) -> float | None:
    """Epoch seconds from '', '15m' (ago), an ISO date/time, or epoch seconds."""
    if not text:
        return None
    if text[-1] in _UNITS and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * _UNITS[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"{name}={text!r}: give 15m, 2h, 1d, an ISO time or epoch seconds"
        ) from None


def invocations(m: Monitor, request: Request) -> Context:
    return "invocations.html", _list(m, request)


def invocation_rows(m: Monitor, request: Request) -> Context:
    return "_rows.html", _list(m, request)


def _list(m: Monitor, request: Request) -> dict[str, Any]:
    filters, raw = filters_from(request, m.fleet.settings.codec)
    after = request.query_params.get("after") or None
    limit = min(max(int(request.query_params.get("limit", PAGE)), 1), 500)
    started = time.perf_counter()
    found = m.reader.page(filters, after, limit)
    took = time.perf_counter() - started
    query = urlencode({k: v for k, v in raw.items() if v})
    return {
        "page": found,
        "filters": raw,
        "query": query,
        "after": after or "",
        "took_ms": took * 1000,
        "tasks": sorted(m.fleet.tasks),
        "statuses": [s.value for s in Status],
        "now": time.time(),
    }


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    runner: str
    started: float
    ended: float | None
    outcome: str
    note: str


def attempts(record: InvocationRecord) -> list[Attempt]:
    """Each run of `record`: who ran it, from when, until what."""
    out: list[Attempt] = []
    entries = list(record.history)
    for i, h in enumerate(entries):
        if h.status is not Status.RUNNING or (i and entries[i - 1].status is Status.PAUSED):
            continue
        # A pause and its resumption belong to the attempt; anything else ends it.
        held = (Status.RUNNING, Status.PAUSED)
        after = next((x for x in entries[i + 1 :] if x.status not in held), None)
        outcome = after.status.value if after else "RUNNING"
        ended = after.at if after else None
        out.append(
            Attempt(len(out) + 1, h.owner, h.at, ended, outcome, after.note if after else "")
        )
    return out


@dataclass(frozen=True, slots=True)
class Node:
    row: Row
    children: list[Node]


TREE_NODES = 200
"""Children shown in the detail page's tree at most (all of them: the list, filtered)."""


def tree(m: Monitor, parent: str, depth: int = 3, budget: list[int] | None = None) -> list[Node]:
    """Children, grandchildren... `depth` levels down, `TREE_NODES` nodes in all."""
    budget = [TREE_NODES] if budget is None else budget
    if depth == 0 or budget[0] <= 0:
        return []
    rows = m.reader.children(parent, budget[0])
    budget[0] -= len(rows)
    return [Node(r, tree(m, r.id, depth - 1, budget)) for r in rows]


def detail(m: Monitor, request: Request) -> Context:
    invocation_id = request.path_params["id"]
    found = m.fleet.runtime().state.get([invocation_id])
    if not found:
        raise ValueError(f"no invocation {invocation_id!r} in the state store")
    record = found[0]
    state = m.fleet.runtime().state
    args, args_cut = _render.cut(_render.decode(value_of(state, record.args), record.codec))
    result, result_cut = _render.cut(_render.decode(value_of(state, record.result), record.codec))
    start = record.history[0].at if record.history else record.created
    end = record.updated if record.status.final else time.time()
    steps = [
        (h, record.history[i + 1].at if i + 1 < len(record.history) else end)
        for i, h in enumerate(record.history)
    ]
    return "invocation.html", {
        **_workflow_links.links(m.fleet, state, record),
        "r": record,
        "args": args,
        "args_cut": args_cut,
        "result": result,
        "result_cut": result_cut,
        "attempts": attempts(record),
        "children": tree(m, record.id),
        "steps": steps,
        "span": max(end - start, 1e-6),
        "start": start,
        "retries": [h for h in record.history if h.status is Status.RETRY],
        "cancellable": not record.status.final,
        "retryable": record.status in (Status.FAILED, Status.CANCELLED),
    }


def value_of(state: StateStore, data: bytes | None) -> bytes | None:
    """The value itself: a large one is kept as a blob, which is read here."""
    key = blob_key(data)
    if key is None:
        return data
    return state.get_blob(key) or data  # a blob gone: shown as its reference


def full_value(m: Monitor, request: Request) -> Context:
    invocation_id, part = request.path_params["id"], request.path_params["part"]
    if part not in ("args", "result"):
        raise ValueError(f"no part {part!r}: args or result")
    found = m.fleet.runtime().state.get([invocation_id])
    if not found:
        raise ValueError(f"no invocation {invocation_id!r} in the state store")
    r = found[0]
    state = m.fleet.runtime().state
    text = _render.decode(value_of(state, r.args if part == "args" else r.result), r.codec)
    return "value.html", {"r": r, "part": part, "text": text}


def timeline(m: Monitor, request: Request) -> Context:
    q = request.query_params
    now = time.time()
    window = float(q.get("window", 300))
    if not 0.001 <= window <= 7 * 86400:
        raise ValueError(f"window={window!r}: between 0.001 and 604800 seconds")
    end = float(q.get("end", now))
    start = end - window
    spans = m.reader.spans(start, end, 2000)
    lanes = _render.lanes(spans, start, end, 1000)
    fit = None
    if spans:
        first = min(s.created for s in spans)
        last = max((s.history[-1].at for s in spans if s.history), default=first)
        pad = max((last - first) * 0.05, 0.05)
        fit = (last + pad, last - first + 2 * pad)
    return "timeline.html", {
        "lanes": lanes,
        "start": start,
        "end": end,
        "window": window,
        "count": len(spans),
        "fit": fit,
        "zoom_in": (end - window / 4, window / 2),
        "zoom_out": (min(end + window / 2, now), window * 2),
        "earlier": (end - window / 2, window),
        "later": (min(end + window / 2, now), window),
        "ticks": [(i * 100, _render.stamp(start + window * i / 10)[11:23]) for i in range(11)],
    }
