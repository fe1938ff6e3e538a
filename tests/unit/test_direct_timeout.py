"""Direct-task calls and `.result(timeout=)` end with a ResultTimeoutError that says why."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from fleet import Fleet, ResultTimeoutError, Status, TaskDefinitionError
from fleet.testing.worker import running_worker

release = threading.Event()


def double(x: int) -> int:
    return 2 * x


def held(x: int) -> int:
    release.wait(30)
    return x


def memory_app(**settings: object) -> Fleet:
    url = f"memory://{uuid.uuid4().hex}"
    return Fleet(broker_url=url, state_url=url, **settings)


def test_a_direct_call_with_no_worker_times_out_by_the_setting() -> None:
    app = memory_app(direct_timeout=0.2)
    task = app.direct_task(double)
    with pytest.raises(ResultTimeoutError) as info:
        task(1)
    error = info.value
    assert isinstance(error, TimeoutError)
    assert error.status == "PENDING"
    assert error.queue == "default"
    assert error.consumers == 0
    assert error.invocation_id in str(error)
    assert "status PENDING on queue 'default', which has no consumers" in str(error)
    assert app.record(error.invocation_id).task == task.name
    app.close()


def test_the_default_is_bounded_and_zero_waits_forever() -> None:
    app = memory_app()
    assert app.direct_task(double).default_timeout() == 300.0
    assert app.direct_task(direct_timeout=0)(double).default_timeout() is None
    with pytest.raises(TaskDefinitionError, match="direct_timeout"):
        app.direct_task(direct_timeout=-1)(double)
    with pytest.raises(TaskDefinitionError, match="direct_task"):
        app.task(direct_timeout=5)(double)


def test_task_option_and_per_call_override() -> None:
    app = memory_app(direct_timeout=0)  # the setting alone would wait forever
    task = app.direct_task(direct_timeout=0.1)(double)
    with pytest.raises(ResultTimeoutError, match=r"after 0\.1s"):
        task(1)
    with pytest.raises(ResultTimeoutError, match=r"after 0\.05s"):
        task.call_with(timeout=0.05)(1)
    with pytest.raises(ResultTimeoutError, match=r"after 0\.05s"):
        asyncio.run(task.call_with(timeout=0.05).acall(1))
    with pytest.raises(TypeError, match="timeout"):
        task.call_with(timeout=-1)
    app.close()


def test_result_timeout_names_status_queue_and_consumers() -> None:
    app = memory_app()
    task = app.task(held)
    release.clear()
    with running_worker(app, threads=1):
        invocation = task(7)
        with pytest.raises(ResultTimeoutError) as info:
            invocation.result(timeout=0.2)
        assert info.value.invocation_id == invocation.id
        assert info.value.consumers == 1
        assert info.value.status in {"PENDING", "RUNNING"}
        assert "which has 1 consumer(s)" in str(info.value)
        with pytest.raises(ResultTimeoutError):
            list(task.parallelize([1, 2]).as_completed(timeout=0.1))
        release.set()
        assert invocation.result(timeout=10) == 7
        assert invocation.status is Status.SUCCESS
    app.close()


def test_a_direct_call_that_finishes_in_time_returns_its_value() -> None:
    app = memory_app(direct_timeout=30)
    task = app.direct_task(double)
    with running_worker(app, threads=1):
        assert task(21) == 42
        assert task.call_with(timeout=None)(4) == 8
    app.close()
