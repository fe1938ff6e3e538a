"""Records to MongoDB documents and back, and changes and queries to filters.

Job: the one place that knows the field names of the MongoDB state store (documented
in `fleet.state.mongo`), so that the store itself only sequences commands.

Contract: pure functions. Every `InvocationRecord` and `RunnerRecord` round-trips
exactly: timestamps are BSON doubles (Python floats, every digit kept), bytes are BSON
binary, statuses their string values. `change_op` builds the compare-and-set of one
`Change`: a filter naming the id, the expected statuses and owner, and one update that
sets the new status and fields, appends the history entry (stamped with `op`, a token
that lets the store tell afterwards whether this very change took effect), counts the
attempt, and sets `finished` (a Date, for the TTL index) on entering a final status.
`refs` lists the blobs an invocation's args and result refer to (spilled by the store,
or references made by the app), so that unreferenced blobs can be found by index.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bson import Binary

from fleet.state import Change, ErrorInfo, InvocationRecord, Query, RunnerRecord, blob_key
from fleet.status import HistoryEntry, Status

Doc = dict[str, Any]


def date(seconds: float) -> datetime:
    """A BSON Date (millisecond precision) for TTL indexes."""
    return datetime.fromtimestamp(seconds, UTC)


def entry_doc(entry: HistoryEntry, op: str = "") -> Doc:
    doc: Doc = {"s": entry.status.value, "at": entry.at}
    if entry.owner:
        doc["by"] = entry.owner
    if entry.note:
        doc["note"] = entry.note
    if op:
        doc["op"] = op
    return doc


def entry_from(doc: Doc) -> HistoryEntry:
    return HistoryEntry(Status(doc["s"]), doc["at"], doc.get("by", ""), doc.get("note", ""))


def error_doc(error: ErrorInfo) -> Doc:
    doc: Doc = {"type": error.type, "message": error.message, "traceback": error.traceback}
    if error.args is not None:
        doc["args"] = Binary(error.args)
    return doc


def error_from(doc: Doc | None) -> ErrorInfo | None:
    if doc is None:
        return None
    args = doc.get("args")
    return ErrorInfo(doc["type"], doc["message"], doc.get("traceback", ""), _bytes(args))


def invocation_doc(
    r: InvocationRecord, now: float, args_ref: str = "", result_ref: str = ""
) -> Doc:
    """The document of a new invocation; `*_ref` name blobs holding oversized values."""
    status = Status(r.status)
    doc: Doc = {
        "_id": r.id,
        "task": r.task,
        "queue": r.queue,
        "codec": r.codec,
        "status": status.value,
        "call_key": r.call_key,
        "owner": r.owner,
        "history": [entry_doc(e) for e in r.history],
        "attempt": r.attempt,
        "due": r.due,
        "parent": r.parent,
        "reply_to": r.reply_to,
        "waits_on": list(r.waits_on),
        "created": r.created,
        "updated": r.updated,
    }
    if args_ref:
        doc["args_ref"] = args_ref
    else:
        doc["args"] = Binary(r.args)
    if result_ref:
        doc["result_ref"] = result_ref
    elif r.result is not None:
        doc["result"] = Binary(r.result)
    if r.error is not None:
        doc["error"] = error_doc(r.error)
    if status.final:
        doc["finished"] = date(now)
    refs = {args_ref, result_ref, blob_key(r.args) or "", blob_key(r.result) or ""} - {""}
    if refs:
        doc["refs"] = sorted(refs)
    return doc


def invocation_from(
    doc: Doc, args: bytes | None = None, result: bytes | None = None
) -> InvocationRecord:
    """The record of a document; `args`/`result` stand in for blob references."""
    if args is None:
        args = _bytes(doc.get("args")) or b""
    if result is None:
        result = _bytes(doc.get("result"))
    return InvocationRecord(
        id=doc["_id"],
        task=doc["task"],
        queue=doc["queue"],
        args=args,
        codec=doc["codec"],
        status=Status(doc["status"]),
        call_key=doc.get("call_key", ""),
        owner=doc.get("owner", ""),
        history=tuple(entry_from(e) for e in doc.get("history", ())),
        result=result,
        error=error_from(doc.get("error")),
        attempt=doc.get("attempt", 0),
        due=doc.get("due"),
        parent=doc.get("parent", ""),
        reply_to=doc.get("reply_to", ""),
        waits_on=tuple(doc.get("waits_on", ())),
        created=doc.get("created", 0.0),
        updated=doc.get("updated", 0.0),
    )


def blob_refs(doc: Doc) -> tuple[str, str]:
    """Blob keys of an invocation's oversized args and result ('' when stored inline)."""
    result_ref = "" if "result" in doc else doc.get("result_ref", "")
    return doc.get("args_ref", ""), result_ref


def change_op(
    ch: Change, when: float, now: float, op: str, result_ref: str = ""
) -> tuple[Doc, Doc]:
    """(filter, update) of one compare-and-set change, made at `when` (the history's
    time) and written at `now` (the wall clock that starts the retention period)."""
    expect = sorted(s.value for s in ch.expect)
    flt: Doc = {"_id": ch.id, "status": expect[0] if len(expect) == 1 else {"$in": expect}}
    if ch.expect_owner is not None:
        flt["owner"] = ch.expect_owner
    sets: Doc = {
        "status": ch.to.value,
        "owner": ch.owner,
        "updated": when,
        "waits_on": list(ch.waits_on) if ch.to is Status.PAUSED else [],
    }
    update: Doc = {
        "$set": sets,
        "$push": {"history": entry_doc(HistoryEntry(ch.to, when, ch.by, ch.note), op)},
    }
    if result_ref:
        sets["result_ref"] = result_ref
        update["$unset"] = {"result": ""}
    elif ch.result is not None:
        sets["result"] = Binary(ch.result)
    if ch.error is not None:
        sets["error"] = error_doc(ch.error)
    if ch.due is not None:
        sets["due"] = ch.due
    if ch.to.final:
        sets["finished"] = date(now)
    elif any(s.final for s in ch.expect):  # a re-drive: the TTL must not delete it
        update["$unset"] = {**update.get("$unset", {}), "finished": ""}
    if ch.count_attempt or ch.refund_attempt:
        update["$inc"] = {"attempt": 1 if ch.count_attempt else -1}
    ref = result_ref or blob_key(ch.result)
    if ref:
        update["$addToSet"] = {"refs": ref}
    return flt, update


def query_filter(query: Query) -> Doc:
    flt: Doc = {}
    if query.statuses:
        flt["status"] = {"$in": sorted(Status(s).value for s in query.statuses)}
    owner: Doc = {}
    if query.owners is not None:
        owner["$in"] = list(query.owners)
    if query.not_owners is not None:
        owner["$nin"] = list(query.not_owners)
    if owner:
        flt["owner"] = owner
    if query.due_before is not None:
        flt["due"] = {"$lt": query.due_before}
    if query.updated_before is not None:
        flt["updated"] = {"$lt": query.updated_before}
    if query.updated_after is not None:
        flt.setdefault("updated", {})["$gte"] = query.updated_after
    if query.task is not None:
        flt["task"] = query.task
    return flt


def runner_doc(r: RunnerRecord, now: float) -> Doc:
    return {
        "_id": r.id,
        "kind": r.kind,
        "host": r.host,
        "pid": r.pid,
        "beat": r.beat,
        "parent": r.parent,
        "queues": list(r.queues),
        "in_hand": list(r.in_hand),
        "started": r.started,
        "stopped": r.stopped,
        # The same normal form as the SQLite store: JSON types, unknown values as text.
        "info": json.loads(json.dumps(r.info, default=str)),
        "seen": date(now),
    }


def runner_from(doc: Doc) -> RunnerRecord:
    return RunnerRecord(
        id=doc["_id"],
        kind=doc["kind"],
        host=doc["host"],
        pid=doc["pid"],
        beat=doc["beat"],
        parent=doc.get("parent", ""),
        queues=tuple(doc.get("queues", ())),
        in_hand=tuple(doc.get("in_hand", ())),
        started=doc.get("started", 0.0),
        stopped=bool(doc.get("stopped", False)),
        info=dict(doc.get("info", {})),
    )


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
