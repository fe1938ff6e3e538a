"""Trigger definitions and firings in the SQLite state store's file.

Job: implement `TriggerStore` for `SQLiteStateStore`, on two tables created with its
schema (`TRIGGER_SCHEMA`).

Contract: `fleet_triggers` holds one row per definition (the condition's parameters as
JSON, its result value as a BLOB, `subject` = watched task or event name, indexed with
the kind); `fleet_firings` has the primary key (trigger, key), so `record_firing` is one
`INSERT OR IGNORE` whose row count says whether this key fired before, whatever the
number of processes racing. Deleting a definition deletes its firings in the same
transaction.
"""

from __future__ import annotations

import json
from typing import Any

from fleet._sqlite import Database, Tx
from fleet.triggers import (
    Condition,
    Firing,
    Kind,
    TriggerDefinition,
    TriggerStore,
    check_kind,
    condition_from,
    condition_params,
)

TRIGGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_triggers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    params TEXT NOT NULL,
    value BLOB,
    task TEXT NOT NULL,
    args BLOB NOT NULL,
    codec TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_triggers_kind ON fleet_triggers (kind, subject);
CREATE TABLE IF NOT EXISTS fleet_firings (
    trigger_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fired_at REAL NOT NULL,
    invocation TEXT NOT NULL,
    PRIMARY KEY (trigger_id, key)
);
CREATE INDEX IF NOT EXISTS fleet_firings_latest ON fleet_firings (trigger_id, fired_at);
"""

_COLUMNS = "id, name, kind, subject, params, value, task, args, codec, enabled, created"


class SQLiteTriggers(TriggerStore):
    """Mixin for `SQLiteStateStore` (which owns `db`)."""

    db: Database

    def save_trigger(self, definition: TriggerDefinition) -> None:
        cond = definition.condition
        params = condition_params(cond)
        value = params.pop("value", None)
        row = (
            definition.id,
            definition.name,
            cond.kind.value,
            cond.subject,
            json.dumps(params, sort_keys=True),
            value,
            definition.task,
            bytes(definition.args),
            definition.codec,
            int(definition.enabled),
            definition.created,
        )
        self.db.write(
            lambda tx: tx.execute(
                f"INSERT OR REPLACE INTO fleet_triggers ({_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    def delete_trigger(self, trigger_id: str) -> bool:
        def tx_fn(tx: Tx) -> bool:
            tx.execute("DELETE FROM fleet_firings WHERE trigger_id = ?", (trigger_id,))
            return tx.execute("DELETE FROM fleet_triggers WHERE id = ?", (trigger_id,)).rowcount > 0

        return self.db.write(tx_fn)

    def triggers(
        self, kind: Kind | str | None = None, task: str | None = None, event: str | None = None
    ) -> list[TriggerDefinition]:
        wanted = check_kind(kind)
        where, params = [], []
        if wanted is not None:
            where.append("kind = ?")
            params.append(wanted.value)
        if task is not None:
            where.append("kind != 'event' AND kind != 'cron' AND subject = ?")
            params.append(task)
        if event is not None:
            where.append("kind = 'event' AND subject = ?")
            params.append(event)
        sql = f"SELECT {_COLUMNS} FROM fleet_triggers"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.db.query(sql + " ORDER BY created, id", params)
        return [_definition(row) for row in rows]

    def record_firing(self, firing: Firing) -> bool:
        return (
            self.db.rowcount(
                "INSERT OR IGNORE INTO fleet_firings (trigger_id, key, fired_at, invocation)"
                " VALUES (?, ?, ?, ?)",
                (firing.trigger, firing.key, firing.fired_at, firing.invocation),
            )
            == 1
        )

    def firings(self, trigger_id: str, limit: int = 100) -> list[Firing]:
        if limit <= 0:
            return []
        rows = self.db.query(
            "SELECT trigger_id, key, fired_at, invocation FROM fleet_firings"
            " WHERE trigger_id = ? ORDER BY fired_at DESC, key DESC LIMIT ?",
            (trigger_id, limit),
        )
        return [Firing(*row) for row in rows]


def _definition(row: tuple[Any, ...]) -> TriggerDefinition:
    rid, name, kind, _subject, params, value, task, args, codec, enabled, created = row
    values = json.loads(params)
    if value is not None:
        values["value"] = bytes(value)
    condition: Condition = condition_from(kind, values)
    return TriggerDefinition(
        id=rid,
        name=name,
        condition=condition,
        task=task,
        args=bytes(args),
        codec=codec,
        enabled=bool(enabled),
        created=created,
    )
