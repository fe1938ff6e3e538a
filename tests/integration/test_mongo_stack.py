"""The full framework on the MongoDB state store: a real worker, real calls."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fleet import Fleet
from fleet.broker import memory
from fleet.status import Status
from fleet.testing.worker import running_worker

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(300)]


def double(x: int) -> int:
    return 2 * x


def explode(reason: str) -> None:
    raise ValueError(reason)


def blob(size: int) -> bytes:
    return b"\x07" * size


@pytest.fixture
def app(mongo_db_url: str) -> Iterator[Fleet]:
    broker = f"mongo-stack-{uuid.uuid4().hex[:8]}"
    app = Fleet(
        broker_url=f"memory://{broker}",
        state_url=mongo_db_url,
        large_value_threshold=100_000,
        heartbeat_interval=0.5,
    )
    yield app
    app.close()
    memory.drop(broker)


def test_calls_fan_out_failures_and_large_values(app: Fleet) -> None:
    double_task = app.task(double)
    explode_task = app.task(explode)
    blob_task = app.task(blob)
    with running_worker(app, threads=8):
        assert double_task(21).result(timeout=60) == 42
        group = double_task.parallelize(range(100))
        assert list(group) == [2 * i for i in range(100)]
        failing = explode_task("no such report")
        with pytest.raises(ValueError, match="no such report"):
            failing.result(timeout=60)
        assert blob_task(300_000).result(timeout=60) == b"\x07" * 300_000
    store = app.runtime().state
    counts = store.counts()
    assert (counts[Status.SUCCESS], counts[Status.FAILED]) == (102, 1)
    record = app.record(failing.id)
    assert [h.status for h in record.history] == [Status.PENDING, Status.RUNNING, Status.FAILED]
    assert record.error is not None and record.error.type == "builtins.ValueError"
    assert {r.kind for r in store.runners()} == {"process"}
