"""Trigger definitions, firings and composite hits in the SQLite state store's file.

Job: implement `TriggerStore` for `SQLiteStateStore`, on three tables created with its
schema (`TRIGGER_SCHEMA`).

Contract: `fleet_triggers` holds one row per definition (the condition's parameters as
JSON, its result value as a BLOB, `subject` = watched task or event name, indexed with
the kind); `fleet_firings` has the primary key (trigger, key), so `record_firing` is one
`INSERT OR IGNORE` whose row count says whether this key fired before, whatever the
number of processes racing; a partial index finds the pending ones. `fleet_trigger_hits`
has the primary key (trigger, part, key). Deleting a definition deletes its firings
and hits in the same transaction. The definition's derivation (`derive`, `function`,
`declared`) is one JSON column, `spec`.
"""

from __future__ import annotations

import json
from typing import Any

from fleet._sqlite import Database, Tx
from fleet.triggers import (
    Condition,
    Firing,
    Hit,
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
    created REAL NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS fleet_triggers_kind ON fleet_triggers (kind, subject);
CREATE TABLE IF NOT EXISTS fleet_firings (
    trigger_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fired_at REAL NOT NULL,
    invocation TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    call BLOB NOT NULL DEFAULT x'',
    pending INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (trigger_id, key)
);
CREATE INDEX IF NOT EXISTS fleet_firings_latest ON fleet_firings (trigger_id, fired_at);
CREATE INDEX IF NOT EXISTS fleet_firings_pending ON fleet_firings (fired_at) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS fleet_trigger_hits (
    trigger_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (trigger_id, part, key)
);
CREATE INDEX IF NOT EXISTS fleet_trigger_hits_at ON fleet_trigger_hits (trigger_id, at);
"""

_COLUMNS = "id, name, kind, subject, params, value, task, args, codec, enabled, created, spec"
_FIRING = "trigger_id, key, fired_at, invocation, source, error, call, pending"


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
            json.dumps(_spec(definition), sort_keys=True),
        )
        self.db.write(
            lambda tx: tx.execute(
                f"INSERT OR REPLACE INTO fleet_triggers ({_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    def delete_trigger(self, trigger_id: str) -> bool:
        def tx_fn(tx: Tx) -> bool:
            tx.execute("DELETE FROM fleet_firings WHERE trigger_id = ?", (trigger_id,))
            tx.execute("DELETE FROM fleet_trigger_hits WHERE trigger_id = ?", (trigger_id,))
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
                f"INSERT OR IGNORE INTO fleet_firings ({_FIRING}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    firing.trigger,
                    firing.key,
                    firing.fired_at,
                    firing.invocation,
                    firing.source,
                    firing.error,
                    bytes(firing.call),
                    int(firing.pending),
                ),
            )
            == 1
        )

    def firings(self, trigger_id: str, limit: int = 100) -> list[Firing]:
        if limit <= 0:
            return []
        rows = self.db.query(
            f"SELECT {_FIRING} FROM fleet_firings"
            " WHERE trigger_id = ? ORDER BY fired_at DESC, key DESC LIMIT ?",
            (trigger_id, limit),
        )
        return [_firing(row) for row in rows]

    def settle_firing(self, trigger_id: str, key: str, error: str = "") -> None:
        self.db.rowcount(
            "UPDATE fleet_firings SET pending = 0, error = ? WHERE trigger_id = ? AND key = ?",
            (error, trigger_id, key),
        )

    def pending_firings(self, before: float, limit: int = 100) -> list[Firing]:
        if limit <= 0:
            return []
        rows = self.db.query(
            f"SELECT {_FIRING} FROM fleet_firings WHERE pending = 1 AND fired_at < ?"
            " ORDER BY fired_at, trigger_id, key LIMIT ?",
            (before, limit),
        )
        return [_firing(row) for row in rows]

    def record_hit(self, hit: Hit, forget_before: float = 0.0) -> bool:
        def tx_fn(tx: Tx) -> bool:
            tx.execute(
                "DELETE FROM fleet_trigger_hits WHERE trigger_id = ? AND at < ?",
                (hit.trigger, forget_before),
            )
            return (
                tx.execute(
                    "INSERT OR IGNORE INTO fleet_trigger_hits (trigger_id, part, key, at)"
                    " VALUES (?, ?, ?, ?)",
                    (hit.trigger, hit.part, hit.key, hit.at),
                ).rowcount
                == 1
            )

        return self.db.write(tx_fn)

    def hits(self, trigger_id: str, since: float) -> list[Hit]:
        rows = self.db.query(
            "SELECT trigger_id, part, key, at FROM fleet_trigger_hits"
            " WHERE trigger_id = ? AND at >= ? ORDER BY at, part, key",
            (trigger_id, since),
        )
        return [Hit(*row) for row in rows]


def _spec(d: TriggerDefinition) -> dict[str, Any]:
    return {"derive": dict(d.derive), "function": d.function, "declared": d.declared}


def _firing(row: tuple[Any, ...]) -> Firing:
    trigger, key, fired_at, invocation, source, error, call, pending = row
    return Firing(trigger, key, fired_at, invocation, source, error, bytes(call), bool(pending))


def _definition(row: tuple[Any, ...]) -> TriggerDefinition:
    rid, name, kind, _subject, params, value, task, args, codec, enabled, created, spec = row
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
        **json.loads(spec),
    )
