"""Short holds released at their due time; confirmed publishes lose their deadline.

The leader here ticks every 10 s: a 0.2 s countdown or a sub-second retry backoff that
waited for it would run about 10 s late. Times are read from the recorded history,
relative to each due time, with a margin far above any scheduling noise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet.testing.worker import running_worker
from fleet.worker.leader import Leader
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(
    broker_url=URL,
    state_url=URL,
    schedule_interval=10,
    recovery_interval=10,
    queues_file=str(Path(__file__).with_name("worker_queues.yaml")),
)
MARGIN = 1.0
"""Far below the leader's 10 s tick, far above scheduling noise."""
attempts: dict[str, int] = {}


@app.task
def echo(n: int) -> int:
    return n


@app.task(queue="nobody-consumes-this")
def parked(n: int) -> int:
    return n


@app.task(max_retries=3, retry_for=(KeyError,), retry_backoff=0.1)
def flaky(key: str) -> int:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] <= 2:
        raise KeyError(key)
    return attempts[key]


@pytest.fixture(scope="module")
def worker() -> Iterator[None]:
    leader = Leader(app, "test-leader")
    leader.start()
    with running_worker(app, threads=2, queues=["default"]):
        yield
    leader.stop()
    app.close()


def test_short_countdown_is_released_at_its_due_time(worker: None) -> None:
    invocation = echo.schedule(7, countdown=0.2)
    assert invocation.result(timeout=30) == 7
    scheduled, released = invocation.history[0], invocation.history[1]
    assert (scheduled.status, released.status) == (Status.SCHEDULED, Status.PENDING)
    due = scheduled.at + 0.2
    assert due - 0.1 <= released.at < due + MARGIN  # due was set just before `at`


def test_sub_second_retry_backoff_is_released_at_its_due_time(worker: None) -> None:
    invocation = flaky(uuid.uuid4().hex)
    assert invocation.result(timeout=60) == 3
    history = invocation.history
    retries = [i for i, h in enumerate(history) if h.status is Status.RETRY]
    assert len(retries) == 2
    for i in retries:
        delay = float(history[i].note.rsplit(" in ", 1)[1].rstrip("s"))
        released = history[i + 1]
        assert released.status is Status.PENDING
        assert released.at - (history[i].at + delay) < MARGIN


def test_confirmed_publish_loses_its_recovery_deadline(worker: None) -> None:
    invocation = parked(1)
    wait_until(lambda: app.record(invocation.id).due is None, "the deadline to be cleared")
    assert app.record(invocation.id).status is Status.PENDING
