"""Pausing, resuming and time limits while the state store fails (memory stack).

The store is a real memory store behind `tests.failing_store.FailingStore`, which fails
chosen writes on demand.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from fleet import Fleet, Status
from fleet.errors import HardTimeLimitExceeded, SoftTimeLimitExceeded
from fleet.state import Change
from fleet.testing.worker import running_worker
from fleet.worker import executor
from tests.failing_store import FailingStore
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(broker_url=URL, state_url=URL, shutdown_grace=2)
child_may_finish = threading.Event()
softly_stopped = threading.Event()


@app.task
def child() -> int:
    child_may_finish.wait(30)
    return 21


@app.task
def parent() -> int:
    return 2 * child().result(timeout=30)


@app.task(hard_time_limit=0.2)
def stuck() -> None:
    while True:
        time.sleep(0.005)


@app.task(soft_time_limit=0.5)
def soft() -> str:
    try:
        while True:
            time.sleep(0.005)
    except SoftTimeLimitExceeded:
        softly_stopped.set()
        return "stopped softly"


@pytest.fixture
def store() -> Iterator[FailingStore]:
    runtime = app.runtime()
    failing = FailingStore(runtime.state)
    runtime.state = failing
    with running_worker(app, threads=3):
        yield failing
    app.close()


def _is_resume(change: Change) -> bool:
    return change.to is Status.RUNNING and Status.PAUSED in change.expect


def test_resume_that_fails_is_committed_with_the_outcome(
    store: FailingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "STORE_PATIENCE", 0.0)  # give up at the first failure
    store.fail_when, store.failures = _is_resume, 1
    child_may_finish.clear()
    invocation = parent()
    wait_until(lambda: invocation.status is Status.PAUSED, "the parent to pause", timeout=10)
    child_may_finish.set()
    assert invocation.result(timeout=20) == 42  # not left PAUSED under its live owner
    assert store.failed == 1
    statuses = [h.status for h in invocation.history]
    assert statuses[-3:] == [Status.PAUSED, Status.RUNNING, Status.SUCCESS]


def _is_hard_limit_failure(change: Change) -> bool:
    return change.error is not None and "HardTimeLimitExceeded" in change.error.type


def test_hard_limit_commit_during_outage_does_not_stop_other_limits(
    store: FailingStore,
) -> None:
    store.fail_when = _is_hard_limit_failure
    softly_stopped.clear()
    hung = stuck()
    wait_until(lambda: store.failed > 0, "the hard limit's commit to fail", timeout=10)
    limited = soft()
    assert softly_stopped.wait(10), "the soft limit did not fire while a commit was retried"
    store.fail_when = lambda change: False
    assert limited.result(timeout=20) == "stopped softly"
    with pytest.raises(HardTimeLimitExceeded):
        hung.result(timeout=20)


@app.task
def spinning() -> None:
    while True:
        time.sleep(0.005)


def test_limit_and_abandon_logs_name_the_task_and_why(
    store: FailingStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="fleet.worker")
    limited = soft()
    assert limited.result(timeout=20) == "stopped softly"
    soft_lines = [r.getMessage() for r in caplog.records if "soft time limit" in r.getMessage()]
    assert soft_lines and soft.name in soft_lines[0] and limited.id in soft_lines[0]

    cancelled = spinning()
    wait_until(lambda: cancelled.status is Status.RUNNING, "it to run", timeout=10)
    assert cancelled.cancel()

    def abandoned() -> list[str]:
        return [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()]

    wait_until(lambda: bool(abandoned()), "the abandon log line", timeout=10)
    line = abandoned()[0]
    assert spinning.name in line and cancelled.id in line and "cancelled" in line
