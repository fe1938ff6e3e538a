"""Inline mode gives the values and errors a worker gives: fan-out, codec, retries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fleet import ArgumentEncodingError, Fleet, InvocationNotFoundError, SerializationError, Status
from fleet.testing.worker import running_worker


def _chunks(args: dict[str, object]) -> list[tuple[list[int]]]:
    items = args["items"]
    assert isinstance(items, list)
    return [(items[i : i + 2],) for i in range(0, len(items), 2)]


def _join(parts: list[str]) -> str:
    return "+".join(parts)


def describe(items: list[int]) -> str:
    """Called whole it says '5 items'; split in pairs and joined, '2 items+2 items+1 items'."""
    return f"{len(items)} items"


def mutate(items: list[int]) -> list[int]:
    items.append(99)
    return items


def make_opaque(n: int) -> object:
    return object()


calls: dict[str, int] = {}


def flaky(key: str, failures: int) -> str:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= failures:
        raise ConnectionError(f"attempt {calls[key]} failed")
    return f"ok after {calls[key]}"


def picky(key: str) -> None:
    calls[key] = calls.get(key, 0) + 1
    raise ValueError("not retried")


def inline_app(**settings: object) -> Fleet:
    # URLs nothing listens on: inline mode must never open them.
    return Fleet(
        inline=True,
        broker_url="amqp://guest:guest@127.0.0.1:1/",
        state_url="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100",
        **settings,
    )


@pytest.fixture(scope="module")
def memory_app() -> Iterator[Fleet]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url)
    with running_worker(app, threads=2):
        yield app


def test_fan_out_splits_runs_and_aggregates_like_the_workers(memory_app: Fleet) -> None:
    inline = inline_app()
    on_workers = memory_app.direct_task(parallel_func=_chunks, aggregate_func=_join)(describe)
    here = inline.direct_task(parallel_func=_chunks, aggregate_func=_join)(describe)
    items = [1, 2, 3, 4, 5]
    assert on_workers(items) == "2 items+2 items+1 items"
    assert here(items) == on_workers(items)
    assert inline._runtime is None


def test_arguments_and_results_cross_the_codec() -> None:
    inline = inline_app()
    task = inline.task(mutate)
    direct = inline.direct_task(mutate)
    mine = [1]
    assert task(mine).result() == [1, 99]
    assert direct(mine) == [1, 99]
    assert mine == [1]  # the function got a decoded copy, as on a worker
    with pytest.raises(ArgumentEncodingError, match="items"):
        task(object())  # type: ignore[arg-type]
    with pytest.raises(ArgumentEncodingError, match="items"):
        direct(object())  # type: ignore[arg-type]


def test_a_result_the_codec_cannot_encode_fails_the_invocation() -> None:
    inline = inline_app()
    invocation = inline.task(make_opaque)(1)
    assert invocation.status is Status.FAILED
    with pytest.raises(SerializationError, match=r"make_opaque.*'object'"):
        invocation.result()
    with pytest.raises(SerializationError, match="make_opaque"):
        inline.direct_task(make_opaque)(1)


def test_retries_apply_inline_without_sleeping_the_backoff() -> None:
    inline = inline_app(retry_backoff=3600.0)  # a sleep would hang the test
    task = inline.task(max_retries=2, retry_for=(ConnectionError,))(flaky)
    invocation = task("twice", 2)
    assert invocation.result() == "ok after 3"
    statuses = [h.status for h in invocation.history]
    assert statuses == [
        Status.PENDING,
        Status.RUNNING,
        Status.RETRY,
        Status.RUNNING,
        Status.RETRY,
        Status.RUNNING,
        Status.SUCCESS,
    ]
    with pytest.raises(ConnectionError, match="attempt 3 failed"):
        task("thrice", 3).result()
    assert calls["thrice"] == 3  # first attempt + max_retries
    assert inline.direct_task(max_retries=1, retry_for=(ConnectionError,))(flaky)("d", 1) == (
        "ok after 2"
    )


def test_exceptions_outside_retry_for_fail_at_once() -> None:
    inline = inline_app()
    invocation = inline.task(max_retries=5, retry_for=(ConnectionError,))(picky)("once")
    with pytest.raises(ValueError, match="not retried"):
        invocation.result()
    assert calls["once"] == 1
    assert invocation.status is Status.FAILED


def test_invocation_lookup_works_without_broker_or_state_store() -> None:
    inline = inline_app()
    task = inline.task(describe)
    invocation_id = task([1, 2]).id  # the handle itself is dropped, as an API would
    found = inline.invocation(invocation_id)
    assert found.result() == "2 items"
    assert found.status is Status.SUCCESS
    assert found.cancel() is False
    assert inline.cancel(invocation_id) is False
    with pytest.raises(InvocationNotFoundError, match="nope"):
        inline.invocation("nope")
    assert inline._runtime is None
