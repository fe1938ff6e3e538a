"""The full stack on RabbitMQ (SQLite state): hand-back of prefetched messages,
consumer_timeout, publish failures, tasks waiting on tasks, and messages that arrive
before their invocation record."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pika
import pytest

import fleet._submit
import fleet.app
from fleet import PublishError, Status
from fleet.broker.rabbitmq import RabbitMQBroker
from fleet.errors import StateError
from fleet.state import InvocationRecord, Query
from fleet.testing.rabbitmq import RabbitMQServer, ServiceError
from fleet.testing.worker import running_worker
from tests.integration import rabbitmq_tasks
from tests.integration.rabbitmq_tasks import make_app
from tests.services import unavailable
from tests.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]


@pytest.fixture
def release() -> Iterator[None]:
    rabbitmq_tasks.RELEASE.clear()
    yield
    rabbitmq_tasks.RELEASE.set()


def test_prefetched_message_is_handed_to_an_idle_worker(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str], release: None
) -> None:
    """Worker A runs a long task on its only slot and has prefetched the next message;
    worker B starts idle. The prefetched message must run on B while A's task still
    runs, instead of waiting behind it."""
    queue = unique_name("handoff")
    app = make_app(rabbitmq.url, tmp_path, queue)
    hold, quick = app.task(rabbitmq_tasks.hold), app.task(rabbitmq_tasks.quick)
    broker = app.runtime().broker
    try:
        with running_worker(app, threads=1) as worker_a:
            long = hold(120)
            wait_until(lambda: long.status is Status.RUNNING, "the long task to start")
            short = quick(1)
            # Delivered into A's buffer (A has no free slot to run it).
            wait_until(lambda: broker.stats(queue).ready == 0, "A to prefetch the message")
            assert short.status is Status.PENDING
            with running_worker(app, threads=1) as worker_b:
                assert short.result(timeout=30) == 2
                assert long.status is Status.RUNNING  # A is still busy
                runners = [e.owner for e in short.history if e.status is Status.RUNNING]
                assert runners == [worker_b.id]
                rabbitmq_tasks.RELEASE.set()
                assert long.result(timeout=30) == "released"
            assert worker_a.id in [e.owner for e in long.history]
    finally:
        app.close()


def test_consumer_timeout_never_trips(
    tmp_path: Path, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """A task far longer than RabbitMQ's consumer_timeout, with another message
    prefetched behind it: neither delivery stays unacked long enough to trip it."""
    (tmp_path / "rabbitmq").mkdir()
    server = RabbitMQServer(consumer_timeout=2500, base_dir=tmp_path / "rabbitmq")
    try:
        server.start()
    except ServiceError as exc:  # pragma: no cover - no rabbitmq-server here
        unavailable("RabbitMQ with a short consumer_timeout", exc)
    try:
        _prove_timeout_is_enforced(server, unique_name("control"))
        # The node logs asynchronously: wait for the control's own timeout line, so that
        # only lines written after it are checked below.
        logged = b"timed out waiting for delivery acknowledgement"
        wait_until(lambda: logged in server.log_path.read_bytes(), "the control's timeout log")
        checked_from = len(server.log_path.read_bytes())
        queue = unique_name("long")
        app = make_app(server.url, tmp_path, queue)
        sleep = app.task(rabbitmq_tasks.sleep)
        caplog.set_level(logging.WARNING, logger="fleet")
        try:
            with running_worker(app, threads=1):
                first, second = sleep(6.0), sleep(0.1)
                assert first.result(timeout=60) == 6.0
                assert second.result(timeout=60) == 0.1
        finally:
            app.close()
        for invocation in (first, second):
            assert [e.status for e in invocation.history].count(Status.RUNNING) == 1
        assert "reconnecting" not in caplog.text
        log = server.log_path.read_bytes()[checked_from:].decode(errors="replace")
        assert "timed out waiting for delivery acknowledgement" not in log
    finally:
        server.close()


def _prove_timeout_is_enforced(server: RabbitMQServer, queue: str) -> None:
    """A plain consumer that never acks has its channel closed: the setting is live."""
    connection = pika.BlockingConnection(pika.URLParameters(server.url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.basic_publish("", queue, b"x")
        channel.basic_consume(queue, lambda *args: None)
        deadline = time.monotonic() + 30
        while channel.is_open and time.monotonic() < deadline:
            connection.process_data_events(0.2)
        assert channel.is_closed, "consumer_timeout did not close the channel"
    finally:
        if connection.is_open:
            connection.close()


def test_unconfirmed_publish_raises_and_marks_the_invocation_failed(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("full")
    app = make_app(
        rabbitmq.url, tmp_path, queue, "{max_length: 1}", publish_retries=2, publish_confirm="wait"
    )
    quick = app.task(rabbitmq_tasks.quick)
    try:
        accepted = quick(1)
        with pytest.raises(PublishError, match=queue) as caught:
            quick(2)
        assert "nacked by RabbitMQ" in str(caught.value)
        assert accepted.status is Status.PENDING
        (failed,) = app.runtime().state.find(Query(statuses=[Status.FAILED]))
        assert failed.error is not None and failed.error.type == "fleet.errors.PublishError"
        assert isinstance(app.runtime().broker, RabbitMQBroker)
        assert app.runtime().broker.stats(queue).ready == 1
    finally:
        app.close()


def test_tasks_waiting_on_tasks_use_the_urgent_lane(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("fib")
    app = make_app(rabbitmq.url, tmp_path, queue)
    rabbitmq_tasks.TASKS["fib"] = fib = app.task(rabbitmq_tasks.fib)
    try:
        with running_worker(app, threads=2):
            assert fib(9).result(timeout=120) == 34
        urgent = app.runtime().broker.stats(queue)
        assert (urgent.ready, urgent.dead) == (0, 0)
    finally:
        rabbitmq_tasks.TASKS.pop("fib", None)
        app.close()


def test_message_that_arrives_before_its_record_waits_for_it(
    rabbitmq: RabbitMQServer,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The producer writes the record while RabbitMQ confirms the message, so a worker
    can receive the message first: it holds it and claims it once the record is there."""
    app = make_app(rabbitmq.url, tmp_path, unique_name("early"), publish_confirm="wait")
    quick = app.task(rabbitmq_tasks.quick)
    state = app.runtime().state
    register = state.register
    try:
        with running_worker(app, threads=1) as worker:

            def late_register(records: Sequence[InvocationRecord]) -> None:
                wait_until(lambda: len(worker.early) == 1, "the worker to hold the message")
                register(records)

            monkeypatch.setattr(state, "register", late_register)
            invocation = quick(1)
            assert invocation.result(timeout=30) == 2
            statuses = [h.status for h in invocation.history]
            assert statuses == [Status.PENDING, Status.RUNNING, Status.SUCCESS]
            assert len(worker.early) == 0
    finally:
        app.close()


def test_message_whose_record_never_comes_is_dead_lettered(
    rabbitmq: RabbitMQServer,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writing the record fails after the message left: the caller gets the error, and
    the worker dead-letters the message once the grace is over, then goes on."""
    queue = unique_name("orphan")
    app = make_app(rabbitmq.url, tmp_path, queue, publish_confirm="wait")
    quick = app.task(rabbitmq_tasks.quick)
    runtime = app.runtime()
    try:
        with running_worker(app, threads=1) as worker:
            worker.early.grace = 0.3

            def failing_register(records: Sequence[InvocationRecord]) -> None:
                wait_until(lambda: len(worker.early) == 1, "the worker to hold the message")
                raise StateError("state store down (test)")

            with monkeypatch.context() as patch:
                patch.setattr(runtime.state, "register", failing_register)
                with pytest.raises(StateError, match="down"):
                    quick(1)
            wait_until(lambda: runtime.broker.stats(queue).dead == 1, "a dead letter")
            (letter,) = runtime.broker.dead_letters(queue)
            assert "no invocation record" in letter.reason
            assert runtime.state.find(Query()) == []
            assert quick(2).result(timeout=30) == 3  # the worker goes on
    finally:
        app.close()


def test_record_written_after_the_grace_is_published_again(
    rabbitmq: RabbitMQServer,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record written so late that the worker may have given up on its message: the
    producer publishes the message again, and the invocation runs once."""
    queue = unique_name("late")
    app = make_app(rabbitmq.url, tmp_path, queue, publish_confirm="wait")
    quick = app.task(rabbitmq_tasks.quick)
    runtime = app.runtime()
    register = runtime.state.register
    monkeypatch.setattr(fleet._submit, "RECORD_GRACE", 0.3)
    try:
        with running_worker(app, threads=1) as worker:
            worker.early.grace = 0.3

            def late_register(records: Sequence[InvocationRecord]) -> None:
                wait_until(lambda: runtime.broker.stats(queue).dead == 1, "a dead letter")
                register(records)

            monkeypatch.setattr(runtime.state, "register", late_register)
            invocation = quick(1)
            assert invocation.result(timeout=30) == 2
            statuses = [h.status for h in invocation.history]
            assert statuses == [Status.PENDING, Status.RUNNING, Status.SUCCESS]
    finally:
        app.close()
