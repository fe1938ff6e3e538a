"""Worker behaviour on the in-memory stack: waiting, cycles, retries, limits, cancel."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet.errors import (
    CancelledError,
    HardTimeLimitExceeded,
    SoftTimeLimitExceeded,
    WaitCycleError,
)
from fleet.testing.worker import running_worker
from fleet.worker.leader import Leader
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(
    broker_url=URL,
    state_url=URL,
    schedule_interval=0.02,
    recovery_interval=0.02,
    shutdown_grace=2,
    queues_file=str(Path(__file__).with_name("worker_queues.yaml")),
)
calls: dict[str, int] = {}


@app.task
def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1).result() + fib(n - 2).result()


@app.task
def wait_on(invocation_id: str) -> object:
    return app.invocation(invocation_id).result()


@app.task
def cycle_root() -> object:
    me = app.current_invocation()
    assert me is not None
    return wait_on(me.id).result()


@app.task
def wait_on_self() -> object:
    me = app.current_invocation()
    assert me is not None
    return me.result()


@app.task(max_retries=3, retry_for=(KeyError,), retry_backoff=0.01)
def flaky(key: str, failures: int) -> int:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= failures:
        raise KeyError(key)
    return calls[key]


@app.task(max_retries=3, retry_for=(KeyError,), retry_backoff=0.01)
def not_retried(key: str) -> None:
    calls[key] = calls.get(key, 0) + 1
    raise ValueError(key)


@app.task(soft_time_limit=0.2)
def soft_limited() -> str:
    try:
        while True:
            time.sleep(0.005)
    except SoftTimeLimitExceeded:
        return "stopped softly"


@app.task(hard_time_limit=0.2)
def hard_limited() -> None:
    while True:
        time.sleep(0.005)


@app.task
def spin(key: str) -> None:
    calls[key] = 1
    while True:
        time.sleep(0.005)


@app.task(queue="nobody-consumes-this")
def parked() -> None: ...


@pytest.fixture(scope="module")
def worker() -> Iterator[None]:
    leader = Leader(app, "test-leader")
    leader.start()
    with running_worker(app, threads=2, queues=["default"]):
        yield
    leader.stop()


def test_fib_waits_without_deadlock_on_two_slots(worker: None) -> None:
    root = fib(12)
    assert root.result(timeout=60) == 144
    statuses = [h.status for h in root.history]
    assert Status.PAUSED in statuses  # it gave its slot away while waiting
    assert statuses[-1] is Status.SUCCESS


def test_wait_cycle_fails_clearly(worker: None) -> None:
    with pytest.raises(WaitCycleError, match="wait cycle"):
        cycle_root().result(timeout=20)
    with pytest.raises(WaitCycleError):
        wait_on_self().result(timeout=20)


def test_retries_with_backoff_then_success(worker: None) -> None:
    key = uuid.uuid4().hex
    invocation = flaky(key, 2)
    assert invocation.result(timeout=20) == 3
    statuses = [h.status for h in invocation.history]
    assert statuses.count(Status.RETRY) == 2
    notes = [h.note for h in invocation.history if h.status is Status.RETRY]
    assert notes[0].startswith("retry 1/3") and notes[1].startswith("retry 2/3")


def test_retries_exhausted_fail_with_last_error(worker: None) -> None:
    key = uuid.uuid4().hex
    with pytest.raises(KeyError):
        flaky(key, 10).result(timeout=20)
    assert calls[key] == 4  # first attempt + 3 retries


def test_unlisted_exception_is_not_retried(worker: None) -> None:
    key = uuid.uuid4().hex
    with pytest.raises(ValueError):
        not_retried(key).result(timeout=20)
    assert calls[key] == 1


def test_due_scheduled_invocation_runs(worker: None) -> None:
    invocation = fib.schedule(10, countdown=0.2)
    assert invocation.status is Status.SCHEDULED
    assert invocation.result(timeout=20) == 55
    assert [h.status for h in invocation.history][:2] == [Status.SCHEDULED, Status.PENDING]


def test_soft_time_limit_raises_inside_task(worker: None) -> None:
    assert soft_limited().result(timeout=20) == "stopped softly"


def test_hard_time_limit_fails_invocation(worker: None) -> None:
    with pytest.raises(HardTimeLimitExceeded, match="hard time limit"):
        hard_limited().result(timeout=20)


def test_cancel_pending_never_runs() -> None:
    invocation = parked()
    assert invocation.cancel() is True
    assert invocation.status is Status.CANCELLED
    with pytest.raises(CancelledError):
        invocation.result(timeout=5)
    assert invocation.cancel() is False


def test_cancel_running_stops_it(worker: None) -> None:
    key = uuid.uuid4().hex
    invocation = spin(key)
    wait_until(lambda: invocation.status is Status.RUNNING, "it to run", timeout=10)
    assert invocation.cancel() is True
    with pytest.raises(CancelledError):
        invocation.result(timeout=10)
    assert fib(5).result(timeout=10) == 5  # the slot was freed
    assert invocation.status is Status.CANCELLED
