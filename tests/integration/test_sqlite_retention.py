"""A SQLite database made before blobs expired gets their stored time on open."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from fleet.state import BLOB_GRACE
from fleet.state.sqlite import SQLiteStateStore


def test_old_blob_table_gains_stored_and_its_values_can_expire(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE fleet_blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL)")
        conn.execute("INSERT INTO fleet_blobs VALUES ('old', x'01')")
    store = SQLiteStateStore(f"sqlite:///{path}")
    try:
        store.put_blobs([("new", b"\x02")])
        assert store.get_blob("old") == b"\x01"
        assert store.expire(time.time(), limit=10).blobs == 1  # "old": stored at 0
        assert store.get_blob("old") is None and store.get_blob("new") == b"\x02"
        assert store.expire(time.time() + BLOB_GRACE + 1, limit=10).blobs == 1
    finally:
        store.close()
    SQLiteStateStore(f"sqlite:///{path}").close()  # opening again: nothing to add
