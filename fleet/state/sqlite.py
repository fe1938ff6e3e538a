"""The embedded state store: invocations, runners, leases and blobs in a SQLite file.

Job: implement the `StateStore` contract for any number of processes on one host that
share a database file (by default `.fleet/fleet.db`, next to the broker's tables), with
the fewest statements per call.

Contract, beyond `fleet.state`:
- Tables `fleet_invocations`, `fleet_runners`, `fleet_leases`, `fleet_blobs`, and
  `fleet_triggers` / `fleet_firings` for the `TriggerStore` side (`fleet.triggers._sqlite`).
- `apply` of N changes is one write transaction of N statements: each change is one
  `UPDATE ... WHERE id = ? AND status IN (...) [AND owner = ?]` that sets status, owner
  and fields and appends the history entry with `json_insert`, so the compare-and-set
  and the history append cannot be separated. `register` of N is one executemany. A
  batch of one is its single statement, which SQLite runs as a transaction of its own.
- History is a JSON array of `[status, at, owner, note]`; `waits_on` a JSON array;
  `error` a JSON object (args in base64). Floats keep every digit.
- `lease` is a single conditional UPSERT (insert, or take over when held by the same
  holder or expired), so racing processes cannot both win.
- `find` orders by `created`, then registration order.
- Blobs carry their `stored` time; partial indexes on `args`/`result` holding a blob
  reference let `expire` find unreferenced blobs without scanning invocations. A
  database from before blobs expired gets the column on open.
- Options: `busy_timeout` (seconds).
The tables and the row conversions are in `fleet.state._sqlite_schema`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from fleet._sqlite import Database, Tx, chunks, float_options, path_from_url, placeholders
from fleet._sqlite_group import GroupWriter
from fleet._urls import redact
from fleet.errors import DuplicateInvocationError, StateError
from fleet.state import (
    BLOB_GRACE,
    BLOB_MARK,
    Change,
    Expired,
    InvocationRecord,
    Query,
    RunnerRecord,
    StateStore,
)
from fleet.state import _common as c
from fleet.state import _sqlite_schema as tables
from fleet.status import FINAL, HistoryEntry, Status
from fleet.triggers._sqlite import TRIGGER_SCHEMA, SQLiteTriggers

_IS_REF = f"substr({{col}}, 1, {len(BLOB_MARK)}) = X'{BLOB_MARK.hex()}'"
_UNUSED_BLOBS = (
    "SELECT key FROM fleet_blobs AS b WHERE stored < ?1"
    + "".join(
        f" AND NOT EXISTS (SELECT 1 FROM fleet_invocations WHERE {_IS_REF.format(col=col)}"
        f" AND {col} = CAST(X'{BLOB_MARK.hex()}' || b.key AS BLOB))"
        for col in ("args", "result")
    )
    + " LIMIT ?2"
)
_FINAL = ", ".join(f"'{s.value}'" for s in sorted(FINAL))
_EXPIRE = (
    "DELETE FROM fleet_invocations WHERE rowid IN (SELECT rowid FROM fleet_invocations"
    f" WHERE status IN ({_FINAL}) AND updated < ? LIMIT ?)"
)

_COLUMNS = (
    "id, task, queue, args, codec, status, call_key, owner, history, result, error, attempt,"
    " due, parent, reply_to, waits_on, created, updated"
)
_INSERT = f"INSERT INTO fleet_invocations ({_COLUMNS}) VALUES ({placeholders(range(18))})"
_SELECT = f"SELECT {_COLUMNS} FROM fleet_invocations"
_LEASE = (
    "INSERT INTO fleet_leases (name, holder, expires) VALUES (?1, ?2, ?3 + ?4)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
    " WHERE fleet_leases.holder = excluded.holder OR fleet_leases.expires <= ?3"
)


class SQLiteStateStore(StateStore, SQLiteTriggers):
    """See the module docstring."""

    def __init__(self, url: str, **options: object) -> None:
        opts = float_options("SQLiteStateStore", options, {"busy_timeout": 30.0})
        self.url = redact(url)
        path = path_from_url(url, "state_url")
        self.db = Database(path, tables.SCHEMA + TRIGGER_SCHEMA, StateError, opts["busy_timeout"])
        self._group = GroupWriter(self.db)
        self._sql: dict[tuple[Any, ...], tuple[str, list[str]]] = {}
        if not any(row[1] == "stored" for row in self.db.query("PRAGMA table_info(fleet_blobs)")):
            self.db.write(tables.add_stored_column)

    @property
    def statements(self) -> int:
        """SQL statements executed by this store so far (executemany counts rows)."""
        return self.db.statements

    @property
    def transactions(self) -> int:
        return self.db.transactions

    def register(
        self, records: Sequence[InvocationRecord], also: Callable[[Tx], None] | None = None
    ) -> None:
        """Write `records`; with `also`, call it inside the same write transaction (the
        embedded broker's insert of their messages into the same file,
        `fleet._colocated`): both are committed, or neither."""
        for r in records:
            if not isinstance(r, InvocationRecord):
                raise StateError(f"register takes InvocationRecord objects, got {r!r}")
        if not records:
            return
        rows = [tables.row(r) for r in records]

        def tx_fn(tx: Tx) -> None:
            try:
                tx.executemany(_INSERT, rows)
            except sqlite3.IntegrityError as exc:
                raise DuplicateInvocationError(
                    f"cannot register: {self._duplicate(tx, records)}"
                ) from exc
            if also is not None:
                also(tx)

        def alone() -> None:
            try:
                self.db.write_one(_INSERT, rows[0])
            except StateError as exc:
                if isinstance(exc.__cause__, sqlite3.IntegrityError):
                    raise DuplicateInvocationError(
                        f"cannot register: invocation id {records[0].id!r} is already registered"
                    ) from exc.__cause__
                raise

        # Concurrent registrations of this process share one transaction (group commit).
        self._group.write(tx_fn, alone if len(rows) == 1 and also is None else None)

    @staticmethod
    def _duplicate(tx: Tx, records: Sequence[InvocationRecord]) -> str:
        ids = [r.id for r in records]
        if len(set(ids)) < len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            return f"invocation id {dup!r} appears twice in the batch"
        for part in chunks(ids):
            row = tx.execute(
                f"SELECT id FROM fleet_invocations WHERE id IN ({placeholders(part)}) LIMIT 1",
                part,
            ).fetchone()
            if row is not None:
                return f"invocation id {row[0]!r} is already registered"
        return "an invocation id is already registered"

    def apply(self, changes: Sequence[Change], at: float | None = None) -> list[bool]:
        if not changes:
            return []
        when = time.time() if at is None else at
        statements = [self._change(ch, when) for ch in changes]
        if len(statements) == 1:
            return [self.db.write_one(*statements[0]) == 1]

        def tx_fn(tx: Tx) -> list[bool]:
            return [tx.execute(sql, params).rowcount == 1 for sql, params in statements]

        return self.db.write(tx_fn)

    def _change(self, ch: Change, when: float) -> tuple[str, list[Any]]:
        if type(ch) is not Change and not isinstance(ch, Change):
            raise StateError(f"apply takes Change objects, got {ch!r}")
        result, error, due, owner = ch.result, ch.error, ch.due, ch.expect_owner
        expect_set = ch.expect
        shape = (
            expect_set if type(expect_set) is frozenset else frozenset(expect_set),
            owner is not None,
            result is not None,
            error is not None,
            due is not None,
            ch.count_attempt,
            ch.refund_attempt,
        )
        known = self._sql.get(shape)
        if known is None:
            known = self._sql[shape] = self._statement(shape)
        sql, expect = known
        to = ch.to
        waits = json.dumps(list(ch.waits_on)) if to is Status.PAUSED else "[]"
        entry = c.entry_json(HistoryEntry(to, when, ch.by, ch.note))
        params: list[Any] = [to.value, ch.owner, when, waits, entry]
        if result is not None:
            params.append(bytes(result))
        if error is not None:
            params.append(c.error_to_json(error))
        if due is not None:
            params.append(due)
        params.append(ch.id)
        params += expect
        if owner is not None:
            params.append(owner)
        return sql, params

    @staticmethod
    def _statement(shape: tuple[Any, ...]) -> tuple[str, list[str]]:
        """The UPDATE of a change of `shape` (see `_change`), and its expected statuses."""
        expect = [s.value for s in sorted(shape[0])]
        sets = [
            "status = ?",
            "owner = ?",
            "updated = ?",
            "waits_on = ?",
            "history = json_insert(history, '$[#]', json(?))",
        ]
        sets += [
            f"{col} = ?"
            for col, given in zip(("result", "error", "due"), shape[2:5], strict=True)
            if given
        ]
        if shape[5]:
            sets.append("attempt = attempt + 1")
        if shape[6]:
            sets.append("attempt = attempt - 1")
        where = f"id = ? AND status IN ({placeholders(expect)})"
        if shape[1]:
            where += " AND owner = ?"
        return f"UPDATE fleet_invocations SET {', '.join(sets)} WHERE {where}", expect

    def clear_due(self, ids: Sequence[str]) -> None:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return

        def tx_fn(tx: Tx) -> None:
            for part in chunks(unique):
                tx.execute(
                    "UPDATE fleet_invocations SET due = NULL WHERE status = 'PENDING' "
                    f"AND due IS NOT NULL AND id IN ({placeholders(part)})",
                    part,
                )

        self.db.write(tx_fn)

    def get(self, ids: Sequence[str]) -> list[InvocationRecord]:
        if not ids:
            return []
        unique = list(dict.fromkeys(ids))

        def tx_fn(tx: Tx) -> dict[str, InvocationRecord]:
            found: dict[str, InvocationRecord] = {}
            for part in chunks(unique):
                sql = f"{_SELECT} WHERE id IN ({placeholders(part)})"
                for row in tx.execute(sql, part):
                    found[row[0]] = tables.record(row)
            return found

        found = self.db.read(tx_fn)
        return [found[i] for i in ids if i in found]

    def find(self, query: Query) -> list[InvocationRecord]:
        if query.limit <= 0:
            return []
        where: list[str] = []
        params: list[Any] = []
        for column, values, negate in (
            ("status", [s.value for s in query.statuses] if query.statuses else None, False),
            ("owner", query.owners, False),
            ("owner", query.not_owners, True),
        ):
            if values is not None:
                listed = list(values)
                where.append(f"{column} {'NOT ' if negate else ''}IN ({placeholders(listed)})")
                params += listed
        for condition, value in (
            ("due < ?", query.due_before),
            ("updated < ?", query.updated_before),
            ("updated >= ?", query.updated_after),
            ("task = ?", query.task),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY created, rowid LIMIT ?"
        rows = self.db.query(sql, (*params, query.limit))
        return [tables.record(row) for row in rows]

    def counts(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        for status, n in self.db.query(
            "SELECT status, count(*) FROM fleet_invocations GROUP BY status"
        ):
            counts[Status(status)] = n
        return counts

    def purge(self) -> int:
        return self.db.rowcount("DELETE FROM fleet_invocations")

    def beat(self, runners: Sequence[RunnerRecord]) -> None:
        rows = [c.runner_to_row(r) for r in runners]
        if rows:
            self.db.write(
                lambda tx: tx.executemany(
                    f"INSERT OR REPLACE INTO fleet_runners VALUES ({placeholders(range(11))})",
                    rows,
                )
            )

    def runners(self) -> list[RunnerRecord]:
        rows = self.db.query("SELECT * FROM fleet_runners ORDER BY id")
        return [c.runner_from_row(row) for row in rows]

    def forget_runners(self, before: float) -> int:
        return self.db.rowcount("DELETE FROM fleet_runners WHERE beat < ?", (before,))

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        if not holder:
            raise StateError(f"lease {name!r} needs a holder")
        return self.db.rowcount(_LEASE, (name, holder, time.time(), ttl)) == 1

    def release(self, name: str, holder: str) -> None:
        self.db.rowcount("DELETE FROM fleet_leases WHERE name = ? AND holder = ?", (name, holder))

    def put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        now = time.time()
        rows = [(key, bytes(data), now, now - BLOB_GRACE / 2) for key, data in blobs]
        if rows:
            # An existing value is kept; its stored time is refreshed only when half the
            # grace has passed, so a large value put again is not rewritten every time.
            self.db.write(
                lambda tx: tx.executemany(
                    "INSERT INTO fleet_blobs (key, data, stored) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (key) DO UPDATE SET stored = ?3 WHERE stored < ?4",
                    rows,
                )
            )

    def get_blob(self, key: str) -> bytes | None:
        rows = self.db.query("SELECT data FROM fleet_blobs WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def expire(self, before: float, limit: int = 1000) -> Expired:
        if limit <= 0:
            return Expired()

        def tx_fn(tx: Tx) -> Expired:
            invocations = tx.execute(_EXPIRE, (before, limit)).rowcount
            keys = [row[0] for row in tx.execute(_UNUSED_BLOBS, (before - BLOB_GRACE, limit))]
            for part in chunks(keys):
                tx.execute(f"DELETE FROM fleet_blobs WHERE key IN ({placeholders(part)})", part)
            return Expired(invocations, len(keys))

        return self.db.write(tx_fn)

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return f"SQLiteStateStore({self.url!r})"
