"""A slot is freed once its outcome is in the store, not before (memory stack).

While an outcome is not written, a SIGKILL of the process has recovery run its body
again; a slot freed earlier would let the next body start (and finish) meanwhile, so
more finished bodies would be at stake. The store is a real memory store behind
`tests.failing_store.FailingStore`, which fails the first invocation's outcome writes
a few times (the committer retries them with backoff).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from fleet import Fleet, Status
from fleet.testing.worker import running_worker
from tests.failing_store import FailingStore

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(broker_url=URL, state_url=URL, shutdown_grace=2)
go = threading.Event()


@app.task
def first() -> int:
    go.wait(30)
    return 1


@app.task
def second(other: str) -> str:
    """The status of `other` when this body starts."""
    (record,) = app.runtime().state.get([other])
    return record.status.value


@pytest.fixture
def store() -> Iterator[FailingStore]:
    runtime = app.runtime()
    failing = FailingStore(runtime.state)
    runtime.state = failing
    with running_worker(app, threads=1):
        yield failing
    go.set()
    app.close()


def test_the_next_body_starts_once_the_last_outcome_is_written(store: FailingStore) -> None:
    go.clear()
    before = first()
    store.fail_when = lambda change: change.id == before.id and change.to is Status.SUCCESS
    store.failures = 3  # retried after 0.1, 0.2 and 0.4 s
    after = second(before.id)
    go.set()
    assert after.result(timeout=20) == Status.SUCCESS.value
    assert before.result(timeout=20) == 1
    assert store.failed == 3
