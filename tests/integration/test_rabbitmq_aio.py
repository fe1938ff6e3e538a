"""The asyncio API (`fleet.aio`): on RabbitMQ through aio-pika, elsewhere through threads;
in every case the event loop keeps running while calls are in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from fleet import BrokerError, Fleet, PublishError, ResultTimeoutError, Status
from fleet.aio import aclose
from fleet.state import Query
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import running_worker
from tests.integration import rabbitmq_tasks
from tests.integration.rabbitmq_tasks import make_app

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


class Ticker:
    """Counts event-loop ticks: a blocked loop stops ticking."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture(params=["rabbitmq", "sqlite"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[Fleet]:
    if request.param == "rabbitmq":
        url = request.getfixturevalue("rabbitmq").url
    else:
        url = f"sqlite:///{tmp_path}/fleet.db"
    app = make_app(url, tmp_path, unique_name("aio"))
    rabbitmq_tasks.TASKS["quick"] = app.task(rabbitmq_tasks.quick)
    rabbitmq_tasks.TASKS["echo"] = app.direct_task(rabbitmq_tasks.sleep)
    try:
        with running_worker(app, threads=4):
            yield app
    finally:
        app.close()


@pytest_asyncio.fixture
async def app(stack: Fleet) -> AsyncIterator[Fleet]:
    yield stack
    await aclose(stack)


async def test_acall_and_aresult_without_blocking_the_loop(app: Fleet) -> None:
    quick, direct = rabbitmq_tasks.TASKS["quick"], rabbitmq_tasks.TASKS["echo"]
    with Ticker() as ticker:
        invocation = await quick.acall(41)
        assert await invocation.aresult(timeout=30) == 42
        assert await direct.acall(0.2) == 0.2  # a DirectTask call awaits the value
        handles = await asyncio.gather(*(quick.acall(i) for i in range(200)))
        values = await asyncio.gather(*(h.aresult(timeout=60) for h in handles))
        assert values == [i + 1 for i in range(200)]
        group = quick.parallelize(range(20))
        assert await group.aresults(timeout=30) == [i + 1 for i in range(20)]
        sync_handle = quick(5)  # submitted through the sync API, awaited async
        assert await sync_handle.aresult(timeout=30) == 6
    assert ticker.longest < 0.5, f"the event loop was blocked for {ticker.longest:.2f}s"
    assert invocation.status is Status.SUCCESS


async def test_task_exceptions_and_timeouts(app: Fleet) -> None:
    fail = app.task(rabbitmq_tasks.hold)
    rabbitmq_tasks.RELEASE.clear()
    try:
        slow = await fail.acall(30)
        with pytest.raises(TimeoutError) as info:
            await slow.aresult(timeout=0.2)
        assert isinstance(info.value, ResultTimeoutError)  # names what it waited for
        assert info.value.invocation_id == slow.id
        assert info.value.queue == app.queues.route(slow.task)
        assert info.value.consumers == 1
        assert f"invocation {slow.id}" in str(info.value)
    finally:
        rabbitmq_tasks.RELEASE.set()
    assert await slow.aresult(timeout=30) == "released"
    with pytest.raises(TypeError, match="quick"):
        await rabbitmq_tasks.TASKS["quick"].acall("a", "b")


async def test_reused_calls_follow_the_existing_invocation(app: Fleet) -> None:
    held = app.task(registration_concurrency="TASK")(rabbitmq_tasks.hold)
    rabbitmq_tasks.RELEASE.clear()
    try:
        first = await held.acall(30)
        again = await held.acall(30)  # still running: this call gets that invocation
        assert again.id == first.id
    finally:
        rabbitmq_tasks.RELEASE.set()
    assert await again.aresult(timeout=30) == "released"
    quick = rabbitmq_tasks.TASKS["quick"]
    one = await quick.call_with(idempotency_key="aio-k").acall(1)
    assert await one.aresult(timeout=30) == 2
    two = await quick.call_with(idempotency_key="aio-k").acall(1)  # after it finished
    assert two.id == one.id and await two.aresult(timeout=30) == 2
    found = await asyncio.to_thread(app.runtime().state.find, Query(task=quick.name))
    assert sum(1 for r in found if r.id == one.id) == 1


@pytest.mark.rabbitmq
async def test_async_publish_failure_marks_failed(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("full")
    app = make_app(rabbitmq.url, tmp_path, queue, "{max_length: 1}", publish_retries=2)
    quick = app.task(rabbitmq_tasks.quick)
    try:
        await quick.acall(1)
        with pytest.raises(PublishError, match=queue):
            await quick.acall(2)
        failed = await asyncio.to_thread(app.runtime().state.find, Query(statuses=[Status.FAILED]))
        assert [r.error.type for r in failed if r.error] == ["fleet.errors.PublishError"]
    finally:
        await aclose(app)
        app.close()


async def test_inline_mode(tmp_path: Path) -> None:
    app = Fleet(inline=True, state_url=f"sqlite:///{tmp_path}/x.db")
    quick = app.task(rabbitmq_tasks.quick)
    direct = app.direct_task(rabbitmq_tasks.quick)
    invocation = await quick.acall(1)
    assert await invocation.aresult() == 2
    assert await direct.acall(2) == 3


@pytest.mark.rabbitmq
async def test_async_connection_errors_hide_credentials(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    secret = "n0t-the-Passw0rd"
    url = f"amqp://guest:{secret}@127.0.0.1:{rabbitmq.port}/%2F"
    app = make_app(url, tmp_path, unique_name("denied"), connect_timeout=5)
    quick = app.task(rabbitmq_tasks.quick)
    try:
        with pytest.raises(BrokerError) as caught:
            await quick.acall(1)
        assert secret not in f"{caught.value!r} {caught.value} {caught.value.__cause__!r}"
        assert "ACCESS_REFUSED" in str(caught.value) or "auth" in str(caught.value).lower()
    finally:
        await aclose(app)
        app.close()
