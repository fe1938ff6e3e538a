"""The app on the in-memory stack: calls, results, errors, groups, inline mode."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from fleet import Fleet, Invocation, Status
from fleet.codec import ArgumentEncodingError
from fleet.errors import TaskDefinitionError
from fleet.testing.worker import running_worker


@dataclass(frozen=True)
class Point:
    x: int
    y: int


class Boom(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(code, why)
        self.code = code


def memory_app(**settings: object) -> Fleet:
    url = f"memory://{uuid.uuid4().hex}"
    return Fleet(broker_url=url, state_url=url, **settings)


app = memory_app()


@app.task
def add(a: int, b: int = 0) -> int:
    return a + b


@app.task(max_retries=0)
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def boom(code: int) -> None:
    raise Boom(code, "custom")


@app.task
def shift(p: Point, by: int) -> Point:
    return Point(p.x + by, p.y + by)


@app.direct_task
def double(x: int) -> int:
    return 2 * x


def _split(args: dict[str, object]) -> list[tuple[list[int]]]:
    items = args["items"]
    assert isinstance(items, list)
    return [([i],) for i in items]


def _concat(chunks: list[list[int]]) -> list[int]:
    return [x for chunk in chunks for x in chunk]


@app.direct_task(parallel_func=_split, aggregate_func=_concat)
def squares(items: list[int]) -> list[int]:
    return [i * i for i in items]


@pytest.fixture(scope="module")
def worker() -> Iterator[None]:
    with running_worker(app, threads=4):
        yield


def test_task_returns_invocation_and_result(worker: None) -> None:
    invocation = add(2, 3)
    assert isinstance(invocation, Invocation)
    assert invocation.task.endswith("test_app.add")
    assert invocation.result(timeout=10) == 5
    assert invocation.status is Status.SUCCESS
    history = [h.status for h in invocation.history]
    assert history == [Status.PENDING, Status.RUNNING, Status.SUCCESS]
    assert all(h.at > 0 for h in invocation.history)


def test_direct_task_returns_value(worker: None) -> None:
    assert double(21) == 42


def test_task_exception_keeps_its_type_and_remote_traceback(worker: None) -> None:
    invocation = fail("bad input 7")
    with pytest.raises(ValueError, match="bad input 7") as info:
        invocation.result(timeout=10)
    assert "raise ValueError(message)" in info.value.remote_traceback  # type: ignore[attr-defined]
    assert any("Remote traceback" in n for n in info.value.__notes__)
    assert invocation.status is Status.FAILED


def test_custom_exception_rebuilt(worker: None) -> None:
    with pytest.raises(Boom) as info:
        boom(7).result(timeout=10)
    assert info.value.code == 7


def test_dataclass_arguments_and_results(worker: None) -> None:
    assert shift(Point(1, 2), by=3).result(timeout=10) == Point(4, 5)


def test_parallelize_in_input_order_and_as_completed(worker: None) -> None:
    group = add.parallelize([(i, i) for i in range(50)])
    assert len(group) == 50
    assert list(group) == [2 * i for i in range(50)]
    assert group.results(timeout=10) == [2 * i for i in range(50)]
    done = {inv.id for inv in add.parallelize([(1,), {"a": 2, "b": 2}, 3]).as_completed(10)}
    assert len(done) == 3


def test_fan_out_with_parallel_func(worker: None) -> None:
    assert squares([1, 2, 3, 4]) == [1, 4, 9, 16]
    assert squares(items=[]) == []


def test_many_caller_threads(worker: None) -> None:
    results: dict[int, list[int]] = {}

    def call(n: int) -> None:
        results[n] = [double(n * 100 + i) for i in range(25)]

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {n: [2 * (n * 100 + i) for i in range(25)] for n in range(8)}


def test_wrong_arguments_raise_type_error_before_enqueue() -> None:
    before = app.runtime().state.counts()
    with pytest.raises(TypeError, match=r"test_app.add\(\): missing a required argument"):
        add()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        add(1, c=2)  # type: ignore[call-arg]
    assert app.runtime().state.counts() == before


def test_unencodable_argument_named_at_call_site() -> None:
    before = app.runtime().state.counts()
    with pytest.raises(ArgumentEncodingError) as info:
        add(1, threading.Lock())  # type: ignore[arg-type]
    assert info.value.argument == "b"
    assert "'b'" in str(info.value) and "lock" in str(info.value).lower()
    assert app.runtime().state.counts() == before


def test_schedule_needs_countdown_or_aware_eta() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        add.schedule(1)
    with pytest.raises(TypeError, match="timezone-aware"):
        add.schedule(1, eta=datetime(2030, 1, 1))
    invocation = add.schedule(1, 2, eta=datetime(2099, 1, 1, tzinfo=UTC))
    assert invocation.status is Status.SCHEDULED


def test_bad_decorator_use() -> None:
    with pytest.raises(TaskDefinitionError, match="unknown option"):
        app.task(retries=3)(add.func)
    with pytest.raises(TaskDefinitionError, match="defined inside a function"):

        @app.task
        def local() -> None: ...

    with pytest.raises(TaskDefinitionError, match="max_retries"):
        app.task(max_retries=-1)(add.func)
    with pytest.raises(TaskDefinitionError, match="direct_task"):
        app.task(parallel_func=_split, aggregate_func=_concat)(add.func)


def test_inline_mode_same_values_and_exceptions() -> None:
    inline = Fleet(inline=True, broker_url="memory://never", state_url="memory://never")
    i_add = inline.task(add.func)
    i_fail = inline.task(fail.func)
    i_squares = inline.direct_task(parallel_func=_split, aggregate_func=_concat)(squares.func)
    assert i_add(2, 3).result() == 5
    assert i_add(2, 3).status is Status.SUCCESS
    with pytest.raises(ValueError, match="inline boom"):
        i_fail("inline boom").result()
    assert i_squares([1, 2, 3]) == [1, 4, 9]
    assert inline._runtime is None  # never connected: no broker, no state writes
