"""The embedded state store's tables, and its rows as records and back.

Job: hold the SQL schema of `fleet.state.sqlite` (invocations, runners, leases, blobs)
and the two conversions between an `InvocationRecord` and a `fleet_invocations` row, so
that the store's module holds its statements only.

Contract: `SCHEMA` is idempotent (`IF NOT EXISTS`); `add_stored_column` upgrades a file
made before blobs expired; `row(record)` and `record(row)` are inverse, column for
column in the table's order (history, error and waits_on as JSON, see `_common`).
"""

from __future__ import annotations

import json
from typing import Any

from fleet._sqlite import Tx
from fleet.state import BLOB_MARK, InvocationRecord
from fleet.state import _common as c
from fleet.status import Status

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_invocations (
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    args BLOB NOT NULL,
    codec TEXT NOT NULL,
    status TEXT NOT NULL,
    call_key TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    history TEXT NOT NULL DEFAULT '[]',
    result BLOB,
    error TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    due REAL,
    parent TEXT NOT NULL DEFAULT '',
    reply_to TEXT NOT NULL DEFAULT '',
    waits_on TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_invocations_status ON fleet_invocations (status, due);
CREATE TABLE IF NOT EXISTS fleet_runners (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    beat REAL NOT NULL,
    parent TEXT NOT NULL,
    queues TEXT NOT NULL,
    in_hand TEXT NOT NULL,
    started REAL NOT NULL,
    stopped INTEGER NOT NULL,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_blobs (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    stored REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS fleet_invocations_args_blob ON fleet_invocations (args)
    WHERE substr(args, 1, {n}) = X'{mark}';
CREATE INDEX IF NOT EXISTS fleet_invocations_result_blob ON fleet_invocations (result)
    WHERE substr(result, 1, {n}) = X'{mark}';
""".format(n=len(BLOB_MARK), mark=BLOB_MARK.hex())


def add_stored_column(tx: Tx) -> None:
    """Databases made before blobs expired lack `fleet_blobs.stored`: add it (their
    blobs count as stored long ago, and go once nothing references them)."""
    columns = {row[1] for row in tx.execute("PRAGMA table_info(fleet_blobs)")}
    if "stored" not in columns:
        tx.execute("ALTER TABLE fleet_blobs ADD COLUMN stored REAL NOT NULL DEFAULT 0")


def row(r: InvocationRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.task,
        r.queue,
        bytes(r.args),
        r.codec,
        Status(r.status).value,
        r.call_key,
        r.owner,
        c.history_to_json(r.history),
        None if r.result is None else bytes(r.result),
        c.error_to_json(r.error),
        r.attempt,
        r.due,
        r.parent,
        r.reply_to,
        json.dumps(list(r.waits_on)) if r.waits_on else "[]",
        r.created,
        r.updated,
    )


def record(row: tuple[Any, ...]) -> InvocationRecord:
    (
        rid,
        task,
        queue,
        args,
        codec,
        status,
        call_key,
        owner,
        history,
        result,
        error,
        attempt,
        due,
        parent,
        reply_to,
        waits_on,
        created,
        updated,
    ) = row
    return InvocationRecord(
        id=rid,
        task=task,
        queue=queue,
        args=bytes(args),
        codec=codec,
        status=Status(status),
        call_key=call_key,
        owner=owner,
        history=c.history_from_json(history),
        result=None if result is None else bytes(result),
        error=c.error_from_json(error),
        attempt=attempt,
        due=due,
        parent=parent,
        reply_to=reply_to,
        waits_on=tuple(json.loads(waits_on)),
        created=created,
        updated=updated,
    )
