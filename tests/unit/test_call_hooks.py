"""The `around_call` and `services` hooks as the worker calls them (memory stack):
what the hook sees, that it wraps the task body, and how services start and stop."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from fleet import Fleet, Status
from fleet.extensions import Call, Dispatcher, Extension, Publish
from fleet.testing.worker import running_worker
from fleet.worker import _services


class Around(Extension):
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def around_call(self, call: Call, proceed: Callable[[], Any]) -> Any:
        self.calls.append(call)
        if call.args[0] < 0:  # this test's way to ask for a refusal
            raise RuntimeError("refused by the hook")
        return ("wrapped", proceed())


URL = f"memory://{uuid.uuid4().hex}"
ext = Around()
app = Fleet(broker_url=URL, state_url=URL, extensions=[ext])
ran: list[int] = []


@app.task
def double(x: int) -> int:
    ran.append(x)
    return 2 * x


def test_around_call_wraps_the_task_body_and_sees_the_call() -> None:
    with running_worker(app, threads=2):
        ok = double(21)
        assert list(ok.result(timeout=30)) == ["wrapped", 42]
        refused = double(-1)
        with pytest.raises(Exception, match="refused by the hook"):
            refused.result(timeout=30)
    assert refused.status is Status.FAILED
    assert ran == [21]  # the refused call never reached the body
    first = next(c for c in ext.calls if c.invocation_id == ok.id)
    assert (first.task, first.attempt, first.args) == (double.name, 1, (21,))


class Service:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    def start(self) -> None:
        if self.fail:
            raise OSError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")


class Serving(Extension):
    def __init__(self, services: list[Service]) -> None:
        self._services = services

    def services(self) -> list[Service]:
        return self._services


def test_services_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    started = _services.start(Dispatcher([Serving([Service("a", log), Service("b", log)])]))
    _services.stop(started)
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_a_service_that_cannot_start_stops_the_others_and_raises() -> None:
    log: list[str] = []
    ext = Serving([Service("a", log), Service("b", log, fail=True)])
    with pytest.raises(OSError, match="b cannot start"):
        _services.start(Dispatcher([ext]))
    assert log == ["start a", "stop a"]


def test_no_service_hook_starts_nothing() -> None:
    assert _services.start(Dispatcher([Around()])) == []


class Stamping(Extension):
    """Puts a header on every publish and reads it back in `around_call`."""

    def __init__(self) -> None:
        self.published: list[tuple[str, ...]] = []
        self.seen: dict[str, Mapping[str, str]] = {}

    def around_publish(self, publish: Publish, proceed: Callable[[], None]) -> None:
        publish.headers["x-stamp"] = f"{publish.task}:{len(publish.ids)}"
        proceed()
        self.published.append(publish.ids)

    def around_call(self, call: Call, proceed: Callable[[], Any]) -> Any:
        self.seen[call.invocation_id] = call.headers
        return proceed()


STAMP_URL = f"memory://{uuid.uuid4().hex}"
stamping = Stamping()
stamp_app = Fleet(broker_url=STAMP_URL, state_url=STAMP_URL, extensions=[stamping])


@stamp_app.task
def echo(x: int) -> int:
    return x


def test_around_publish_wraps_the_publish_and_its_headers_reach_around_call() -> None:
    with running_worker(stamp_app, threads=2):
        handles = echo.parallelize([1, 2, 3])
        assert handles.results(timeout=30) == [1, 2, 3]
        single = echo(4)
        assert single.result(timeout=30) == 4
    ids = [h.id for h in handles.invocations]
    assert (*ids,) in stamping.published and (single.id,) in stamping.published
    assert stamping.seen[single.id] == {"x-stamp": f"{echo.name}:1"}
