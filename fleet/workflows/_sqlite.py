"""`HistoryStore` in the SQLite state store's file.

Job: keep workflow events, run membership, data and signals in four tables of the
database the state store opened (`fleet._sqlite.Database`), created on first use.

Contract: `append` is one write transaction (BEGIN IMMEDIATE): the count of the
history's events is read under the write lock and the event inserted only at the next
position (the primary key (history, seq) refuses a taken one as well), with its
children's membership rows (and, for a 'set' event, its data row) in the same
transaction.
"""

from __future__ import annotations

import json

from fleet._sqlite import Database, Tx
from fleet.workflows._history import Event, HistoryConflictError, HistoryStore

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fleet_wf_events (history TEXT NOT NULL, seq INTEGER NOT NULL,"
    " kind TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, ids TEXT NOT NULL,"
    " at REAL NOT NULL, PRIMARY KEY (history, seq))",
    "CREATE TABLE IF NOT EXISTS fleet_wf_members (invocation TEXT PRIMARY KEY, run TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fleet_wf_data (run TEXT NOT NULL, key TEXT NOT NULL,"
    " value BLOB NOT NULL, PRIMARY KEY (run, key))",
    "CREATE TABLE IF NOT EXISTS fleet_wf_signals (n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " run TEXT NOT NULL, name TEXT NOT NULL, payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS fleet_wf_signals_run ON fleet_wf_signals (run, name, n)",
)


class SQLiteHistoryStore(HistoryStore):
    """See the module docstring. `db`: the state store's database (not closed here)."""

    def __init__(self, db: Database) -> None:
        self.db = db

        def create(tx: Tx) -> None:
            for statement in SCHEMA:
                tx.execute(statement)

        db.write(create)

    def load(self, history: str) -> list[Event]:
        rows = self.db.query(
            "SELECT seq, kind, name, data, ids, at FROM fleet_wf_events WHERE history = ?"
            " ORDER BY seq",
            (history,),
        )
        return [
            Event(seq, kind, name, bytes(data), tuple(json.loads(ids)), at)
            for seq, kind, name, data, ids, at in rows
        ]

    def append(self, history: str, run: str, event: Event) -> None:
        def write(tx: Tx) -> None:
            (count,) = tx.execute(
                "SELECT COUNT(*) FROM fleet_wf_events WHERE history = ?", (history,)
            ).fetchone()
            if count != event.seq:
                raise HistoryConflictError(
                    f"workflow history {history}: position {event.seq} is not the next "
                    f"one ({count} recorded)"
                )
            tx.execute(
                "INSERT INTO fleet_wf_events (history, seq, kind, name, data, ids, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    history,
                    event.seq,
                    event.kind,
                    event.name,
                    event.data,
                    json.dumps(list(event.ids)),
                    event.at,
                ),
            )
            if event.kind == "set":
                tx.execute(
                    "INSERT OR REPLACE INTO fleet_wf_data (run, key, value) VALUES (?, ?, ?)",
                    (run, event.name, event.data),
                )
            if event.ids:
                tx.executemany(
                    "INSERT OR REPLACE INTO fleet_wf_members (invocation, run) VALUES (?, ?)",
                    [(i, run) for i in event.ids],
                )

        self.db.write(write)

    def run_of(self, invocation_id: str) -> str | None:
        rows = self.db.query(
            "SELECT run FROM fleet_wf_members WHERE invocation = ?", (invocation_id,)
        )
        return str(rows[0][0]) if rows else None

    def set_data(self, run: str, key: str, value: bytes) -> None:
        self.db.write_one(
            "INSERT OR REPLACE INTO fleet_wf_data (run, key, value) VALUES (?, ?, ?)",
            (run, key, value),
        )

    def data(self, run: str) -> dict[str, bytes]:
        rows = self.db.query("SELECT key, value FROM fleet_wf_data WHERE run = ?", (run,))
        return {str(k): bytes(v) for k, v in rows}

    def signal(self, run: str, name: str, payload: bytes) -> None:
        self.db.write_one(
            "INSERT INTO fleet_wf_signals (run, name, payload) VALUES (?, ?, ?)",
            (run, name, payload),
        )

    def signals(self, run: str, name: str) -> list[bytes]:
        rows = self.db.query(
            "SELECT payload FROM fleet_wf_signals WHERE run = ? AND name = ? ORDER BY n",
            (run, name),
        )
        return [bytes(r[0]) for r in rows]
