"""Worker-runtime behaviour with real worker processes, on every stack."""

from __future__ import annotations

import time
import uuid

import pytest

from fleet import Status
from fleet.errors import CancelledError, WaitCycleError
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.timeout(180)


def test_retries_with_backoff_across_processes(stack: Stack) -> None:
    stack.worker(processes=2, threads=1)
    invocation = stack.tasks.flaky(uuid.uuid4().hex, 2)
    assert invocation.result(timeout=60) == 3
    history = invocation.history
    retries = [h for h in history if h.status is Status.RETRY]
    assert [h.note.split(" in ")[0] for h in retries] == ["retry 1/3", "retry 2/3"]
    # Exponential backoff with equal jitter: attempt n waits between b*2^(n-1)/2 and b*2^(n-1).
    for entry, base in zip(retries, (0.2, 0.4), strict=True):
        delay = float(entry.note.rsplit(" in ", 1)[1].rstrip("s"))
        assert base / 2 <= delay <= base
    runs = [h for h in history if h.status is Status.RUNNING]
    assert len(runs) == 3


def test_wait_cycle_fails_instead_of_hanging(stack: Stack) -> None:
    stack.worker(processes=2, threads=2)
    with pytest.raises(WaitCycleError, match="wait cycle"):
        stack.tasks.cycle_root().result(timeout=60)


def test_due_scheduled_invocation_runs_when_due(stack: Stack) -> None:
    stack.worker(processes=1, threads=2)
    scheduled_at = time.time()
    invocation = stack.tasks.quick.schedule(41, countdown=1.0)
    assert invocation.status is Status.SCHEDULED
    assert invocation.result(timeout=60) == 42
    released = next(h for h in invocation.history if h.status is Status.PENDING)
    assert released.at >= scheduled_at + 1.0
    assert released.note == "due"


def test_soft_time_limit_raises_inside_the_task(stack: Stack) -> None:
    stack.worker(processes=1, threads=1)
    assert stack.tasks.soft_limited().result(timeout=60) == "stopped softly"


def test_cancelled_pending_invocation_never_runs(stack: Stack) -> None:
    invocation = stack.tasks.slow_task(99, 0.1)  # no worker yet: it stays pending
    assert invocation.cancel()
    stack.worker(processes=1, threads=1)
    assert stack.tasks.quick(1).result(timeout=60) == 2  # the worker drained the queue
    with pytest.raises(CancelledError):
        invocation.result(timeout=5)
    assert [h.status for h in invocation.history] == [Status.PENDING, Status.CANCELLED]
    assert not list(stack.marks.glob("start-99-*"))
