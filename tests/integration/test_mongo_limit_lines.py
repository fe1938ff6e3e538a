"""The MongoDB limit store's compare-and-set on a line has no ABA: a writer whose read
predates the line's deletion and re-creation must not overwrite the new line.

With a version counter, a deleted line came back at version 1, the version the stale
writer had read, and its write then erased the new holder (seen as a flaky
`test_a_line_of_processes_never_has_more_than_the_limit[mongo]`).
"""

from __future__ import annotations

import time
import uuid

import pytest

from fleet.concurrency import limit_store
from fleet.concurrency._mongo import MongoLimitStore
from fleet.concurrency._store import Line
from fleet.state import open_state

pytestmark = pytest.mark.mongo


def test_a_write_based_on_a_deleted_line_does_not_overwrite_its_successor(
    mongo_db_url: str,
) -> None:
    store = limit_store(open_state(mongo_db_url))
    assert isinstance(store, MongoLimitStore)
    key = f"line:{uuid.uuid4().hex}"
    assert store.acquire(key, "a", limit=2, now=time.time()).acquired
    meddled = []

    def stale_acquire(line: Line) -> object:
        if not meddled:  # between this writer's read and its write: a lifetime passes
            meddled.append(True)
            store.release(key, "a", now=time.time())  # the line empties: deleted
            assert store.acquire(key, "b", limit=2, now=time.time()).acquired  # re-created
        return line.acquire("c", 2, time.time(), 0.0, None)

    store._change(key, stale_acquire, "acquire")
    holders = store.permits(key, now=time.time()).holders
    assert "b" in holders  # the successor's holder survives
    assert set(holders) == {"b", "c"}
