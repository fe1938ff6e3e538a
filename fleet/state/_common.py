"""Pieces shared by the embedded state stores (memory and SQLite).

Job: the one definition of what a `Query` matches (the memory store filters with it;
the SQLite store translates it to SQL and is tested against the same contract suite),
and the JSON forms of the values the SQLite store keeps as text.

Contract: pure functions. JSON forms round-trip exactly: floats keep every digit
(Python writes them and SQLite's `json()` keeps the text), `ErrorInfo.args` travels as
base64.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

from fleet.state import ErrorInfo, InvocationRecord, Query, RunnerRecord
from fleet.status import HistoryEntry, Status


def matches(record: InvocationRecord, query: Query) -> bool:
    """Whether `record` is selected by `query` (every given field must match)."""
    if query.statuses and record.status not in query.statuses:
        return False
    if query.owners is not None and record.owner not in query.owners:
        return False
    if query.not_owners is not None and record.owner in query.not_owners:
        return False
    if query.due_before is not None and (record.due is None or record.due >= query.due_before):
        return False
    if query.updated_before is not None and record.updated >= query.updated_before:
        return False
    if query.updated_after is not None and record.updated < query.updated_after:
        return False
    return query.task is None or record.task == query.task


def error_to_json(error: ErrorInfo | None) -> str | None:
    if error is None:
        return None
    args = None if error.args is None else base64.b64encode(error.args).decode("ascii")
    return json.dumps(
        {"type": error.type, "message": error.message, "traceback": error.traceback, "args": args}
    )


def error_from_json(text: str | None) -> ErrorInfo | None:
    if text is None:
        return None
    data = json.loads(text)
    args = None if data.get("args") is None else base64.b64decode(data["args"])
    return ErrorInfo(data["type"], data["message"], data.get("traceback", ""), args)


_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # json.dumps's own


def entry_json(entry: HistoryEntry) -> str:
    """One history entry as the JSON array the SQLite store appends (the text
    `json.dumps` writes, built without its encoder: this runs once per status change)."""
    status, at, owner, note = entry.status.value, entry.at, entry.owner, entry.note
    if type(at) is float and math.isfinite(at) and type(owner) is str and type(note) is str:
        return f"[{_quote(status)}, {float.__repr__(at)}, {_quote(owner)}, {_quote(note)}]"
    return json.dumps([status, at, owner, note])


def history_to_json(history: tuple[HistoryEntry, ...]) -> str:
    return "[" + ",".join(entry_json(e) for e in history) + "]"


def history_from_json(text: str) -> tuple[HistoryEntry, ...]:
    return tuple(
        HistoryEntry(Status(s), at, owner, note) for s, at, owner, note in json.loads(text)
    )


def runner_to_row(r: RunnerRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.kind,
        r.host,
        r.pid,
        r.beat,
        r.parent,
        json.dumps(list(r.queues)),
        json.dumps(list(r.in_hand)),
        r.started,
        int(r.stopped),
        json.dumps(r.info, default=str),
    )


def runner_from_row(row: tuple[Any, ...]) -> RunnerRecord:
    rid, kind, host, pid, beat, parent, queues, in_hand, started, stopped, info = row
    return RunnerRecord(
        id=rid,
        kind=kind,
        host=host,
        pid=pid,
        beat=beat,
        parent=parent,
        queues=tuple(json.loads(queues)),
        in_hand=tuple(json.loads(in_hand)),
        started=started,
        stopped=bool(stopped),
        info=json.loads(info),
    )
