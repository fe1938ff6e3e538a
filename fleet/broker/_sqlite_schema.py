"""The embedded broker's tables, and a message as a row of them.

Job: hold the SQL schema of `fleet.broker.sqlite` (messages, dead letters, declared
queues, consumer addresses), the two INSERT statements and the message row they take,
so that the broker's module holds its operations only.

Contract: `SCHEMA` is idempotent (`IF NOT EXISTS`).

A message's `id` (its delivery tag) is a plain rowid, not AUTOINCREMENT, which would
update `sqlite_sequence` in every publish's commit (one more page for the WAL; without
it a lone producer submits 16-19% more calls a second on the embedded default). A new
row's id is still above every id in the table, so the order of a queue holds; but the
id of the newest message can come back once it is deleted, so statements on held
messages match the invocation id too (`fleet.broker._sqlite_consumer`). Files made
before keep their AUTOINCREMENT table; both layouts take the same statements.

`message_row(message, count, now)` is a row for `INSERT` (`delivery_count` = count,
`created` = now); its first six columns are `MESSAGE_COLS`, in that order, which is
also how a row for `BURY` starts (then reason, at).
"""

from __future__ import annotations

from typing import Any

from fleet.broker import Message, _common

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    invocation_id TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    headers TEXT,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL DEFAULT 0,
    holder TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_messages_ready
    ON fleet_messages (queue, priority DESC, id) WHERE holder IS NULL;
CREATE INDEX IF NOT EXISTS fleet_messages_held
    ON fleet_messages (visible_at) WHERE holder IS NOT NULL;
CREATE TABLE IF NOT EXISTS fleet_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    invocation_id TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    headers TEXT,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_dead_letters_queue ON fleet_dead_letters (queue, id);
CREATE TABLE IF NOT EXISTS fleet_queues (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_listeners (
    address TEXT NOT NULL,
    queue TEXT NOT NULL,
    pid INTEGER NOT NULL,
    kind TEXT NOT NULL,
    seen REAL NOT NULL,
    PRIMARY KEY (address, queue)
);
CREATE INDEX IF NOT EXISTS fleet_listeners_queue ON fleet_listeners (queue);
"""

INSERT = (
    "INSERT INTO fleet_messages (queue, body, invocation_id, priority, headers,"
    " delivery_count, visible_at, created) VALUES (?, ?, ?, ?, ?, ?, 0, ?)"
)
BURY = (
    "INSERT INTO fleet_dead_letters (queue, body, invocation_id, priority, headers,"
    " delivery_count, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
MESSAGE_COLS = "queue, body, invocation_id, priority, headers, delivery_count"


def message_row(m: Message, count: int, now: float) -> tuple[Any, ...]:
    """A fleet_messages row for `INSERT` (its first six columns match `MESSAGE_COLS`)."""
    return (
        m.queue,
        bytes(m.body),
        m.invocation_id,
        m.priority,
        _common.headers_json(m.headers),
        count,
        now,
    )
