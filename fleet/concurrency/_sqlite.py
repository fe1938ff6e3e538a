"""`LimitStore` in the SQLite state store's file.

Job: keep lines, rate logs and memos in three tables of the database the state store
opened (`fleet._sqlite.Database`), created on first use (`LIMIT_SCHEMA`).

Contract: every method that changes anything is one write transaction (BEGIN
IMMEDIATE: the write lock is taken before the row is read, so the read and the write
cannot be split by another process); `remember` is an INSERT that keeps a live memo
(`ON CONFLICT ... WHERE expired`), so of racing callers exactly one owns the key.
Lines are one row per key holding `Line.to_doc()` as JSON, deleted when empty. Rate
logs are one row per key (the last `count` starts, JSON).
"""

from __future__ import annotations

import json
from typing import Any

from fleet._sqlite import Database, Tx
from fleet.concurrency._options import RateLimit
from fleet.concurrency._store import Grant, LimitStore, Line, Memo, Permits, live, reserve

LIMIT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fleet_limit_lines (key TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fleet_limit_rates (key TEXT PRIMARY KEY, log TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fleet_limit_memos (key TEXT PRIMARY KEY, holder TEXT NOT NULL,"
    " value TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL)",
)


class SQLiteLimitStore(LimitStore):
    """See the module docstring. `db`: the state store's database (not closed here)."""

    def __init__(self, db: Database) -> None:
        self.db = db

        def create(tx: Tx) -> None:
            for statement in LIMIT_SCHEMA:
                tx.execute(statement)

        db.write(create)

    def _line(self, tx: Tx, key: str) -> Line:
        row = tx.execute("SELECT doc FROM fleet_limit_lines WHERE key = ?", (key,)).fetchone()
        return Line.from_doc(json.loads(row[0]) if row else None)

    def _save(self, tx: Tx, key: str, line: Line) -> None:
        if line.empty:
            tx.execute("DELETE FROM fleet_limit_lines WHERE key = ?", (key,))
        else:
            tx.execute(
                "INSERT OR REPLACE INTO fleet_limit_lines (key, doc) VALUES (?, ?)",
                (key, json.dumps(line.to_doc())),
            )

    def acquire(
        self,
        key: str,
        holder: str,
        *,
        limit: int,
        now: float,
        ttl: float = 0.0,
        since: float | None = None,
    ) -> Grant:
        def tx_fn(tx: Tx) -> Grant:
            line = self._line(tx, key)
            before = line.to_doc()
            grant = line.acquire(holder, limit, now, ttl, since)
            if line.to_doc() != before:
                self._save(tx, key, line)
            return grant

        return self.db.write(tx_fn)

    def release(self, key: str, holder: str, *, now: float) -> tuple[str, ...]:
        def tx_fn(tx: Tx) -> tuple[str, ...]:
            line = self._line(tx, key)
            if line.empty:
                return ()
            woken = line.release(holder, now)
            self._save(tx, key, line)
            return woken

        return self.db.write(tx_fn)

    def permits(self, key: str, *, now: float) -> Permits:
        return self.db.read(lambda tx: self._line(tx, key).permits(now))

    def take(self, key: str, rate: RateLimit, *, now: float) -> float:
        def tx_fn(tx: Tx) -> float:
            row = tx.execute("SELECT log FROM fleet_limit_rates WHERE key = ?", (key,)).fetchone()
            log: list[float] = json.loads(row[0]) if row else []
            at = reserve(log, rate, now)
            tx.execute(
                "INSERT OR REPLACE INTO fleet_limit_rates (key, log) VALUES (?, ?)",
                (key, json.dumps(log)),
            )
            return at

        return self.db.write(tx_fn)

    def remember(
        self, key: str, holder: str, *, now: float, ttl: float = 0.0, value: str = ""
    ) -> Memo:
        expires = now + ttl if ttl else 0.0

        def tx_fn(tx: Tx) -> Memo:
            tx.execute(
                "INSERT INTO fleet_limit_memos (key, holder, value, at, expires)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " holder = excluded.holder, value = excluded.value, at = excluded.at,"
                " expires = excluded.expires"
                " WHERE fleet_limit_memos.expires != 0 AND fleet_limit_memos.expires <= ?",
                (key, holder, value, now, expires, now),
            )
            return _memo(tx.execute(_SELECT_MEMO, (key,)).fetchone())

        return self.db.write(tx_fn)

    def recall(self, key: str, *, now: float) -> Memo | None:
        rows = self.db.query(_SELECT_MEMO, (key,))
        return live(_memo(rows[0]), now) if rows else None

    def forget(self, key: str, holder: str) -> bool:
        return (
            self.db.rowcount(
                "DELETE FROM fleet_limit_memos WHERE key = ? AND holder = ?", (key, holder)
            )
            == 1
        )

    def purge(self, *, now: float, rates_before: float) -> int:
        def tx_fn(tx: Tx) -> int:
            memos = tx.execute(
                "DELETE FROM fleet_limit_memos WHERE expires != 0 AND expires <= ?", (now,)
            ).rowcount
            rates = tx.execute(
                "DELETE FROM fleet_limit_rates WHERE json_extract(log, '$[#-1]') < ?",
                (rates_before,),
            ).rowcount
            return int(memos) + int(rates)

        return self.db.write(tx_fn)


_SELECT_MEMO = "SELECT key, holder, value, at, expires FROM fleet_limit_memos WHERE key = ?"


def _memo(row: tuple[Any, ...]) -> Memo:
    key, holder, value, at, expires = row
    return Memo(key, holder, value, at, expires)
