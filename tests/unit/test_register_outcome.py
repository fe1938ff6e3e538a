"""A caller told that registering failed never sees its call run behind its back.

The state store is the real in-memory store, wrapped so that `register` inserts the
records and then raises (the connection lost after the insert).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from fleet import Fleet, RegistrationUnknownError, StateError, Status
from fleet._records import UNKNOWN_NOTE
from fleet.state import Change, InvocationRecord, StateStore
from fleet.status import CLAIMABLE


class InsertThenFail:
    """The real store, except that `register` inserts and then raises."""

    def __init__(
        self, store: StateStore, *, insert: bool = True, claim: bool = False, down: bool = False
    ) -> None:
        self.store = store
        self.insert = insert
        self.claim = claim  # a worker claims the records before the producer reacts
        self.down = down  # the store stays down: every later call fails too
        self.registered: list[str] = []

    def register(self, records: Sequence[InvocationRecord]) -> None:
        if self.insert:
            self.store.register(records)
            self.registered += [r.id for r in records]
        if self.claim:
            self.store.apply(
                [Change(r.id, Status.RUNNING, CLAIMABLE, by="worker-1") for r in records]
            )
        raise StateError("connection lost after the insert")

    def apply(self, changes: Sequence[Change], at: float | None = None) -> list[bool]:
        if self.down:
            raise StateError("still down")
        return self.store.apply(changes, at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def add(a: int, b: int) -> int:
    return a + b


def failing_app(**wrapper: bool) -> tuple[Fleet, InsertThenFail, Any]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url)
    runtime = app.runtime()
    real = runtime.state
    store = InsertThenFail(real, **wrapper)
    runtime.state = store  # type: ignore[assignment]  # a wrapper around the real store
    return app, store, real


def test_records_written_anyway_are_failed_so_a_claim_loses() -> None:
    app, store, real = failing_app()
    task = app.task(add)
    with pytest.raises(StateError, match="connection lost") as info:
        task(1, 2)
    assert not isinstance(info.value, RegistrationUnknownError)
    (record,) = real.get(store.registered)
    assert record.status is Status.FAILED
    assert record.history[-1].note == UNKNOWN_NOTE
    assert record.error is not None and "connection lost" in record.error.message
    claim = Change(record.id, Status.RUNNING, CLAIMABLE, by="worker-1", count_attempt=True)
    assert real.apply([claim]) == [False]  # a worker receiving its message drops it
    app.close()


def test_scheduled_records_written_anyway_are_cancelled() -> None:
    app, store, real = failing_app()
    task = app.task(add)
    with pytest.raises(StateError, match="connection lost"):
        task.schedule(1, 2, countdown=60)
    (record,) = real.get(store.registered)
    assert record.status is Status.CANCELLED
    assert record.history[-1].note == UNKNOWN_NOTE
    app.close()


def test_when_the_outcome_cannot_be_settled_the_error_says_they_may_run() -> None:
    app, store, real = failing_app(down=True)
    task = app.task(add)
    with pytest.raises(RegistrationUnknownError) as info:
        task.parallelize([(1, 2), (3, 4)])
    assert isinstance(info.value, StateError)
    assert set(info.value.invocation_ids) == set(store.registered)
    for invocation_id in store.registered:
        assert invocation_id in str(info.value)
    assert "may still run" in str(info.value)
    assert isinstance(info.value.__cause__, StateError)
    assert {r.status for r in real.get(store.registered)} == {Status.PENDING}
    app.close()


def test_a_record_claimed_before_the_producer_reacts_is_reported() -> None:
    app, store, real = failing_app(claim=True)
    task = app.task(add)
    with pytest.raises(RegistrationUnknownError) as info:
        task(1, 2)
    assert info.value.invocation_ids == tuple(store.registered)
    (record,) = real.get(store.registered)
    assert record.status is Status.RUNNING
    app.close()


def test_a_failed_insert_raises_the_store_error() -> None:
    app, _, real = failing_app(insert=False)
    task = app.task(add)
    with pytest.raises(StateError, match="connection lost") as info:
        task(1, 2)
    assert not isinstance(info.value, RegistrationUnknownError)
    assert sum(real.counts().values()) == 0  # nothing written, nothing to run
    app.close()
