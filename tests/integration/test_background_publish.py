"""`publish_confirm = "background"` on RabbitMQ: a call returns once its record is
durable; the confirm is awaited by a thread of the process (fleet._pipeline).

The guarantee "a call that returned is never lost" rests on the record written before
the return plus recovery: killing the producer right after a call returned, before any
message was published, still runs the invocation. A publish that fails for good makes
the invocation FAILED, seen on its handle. A lone call's message leaves from the
caller's thread (the pipeline thread only awaits its confirm), but only when that
needs nothing from RabbitMQ but the send.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet import Status, _pipeline
from fleet.broker import Message
from fleet.broker.rabbitmq import RabbitMQBroker
from fleet.errors import FleetError
from fleet.queues import QueueSpec
from fleet.state import Query
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import running_worker
from fleet.worker.leader import Leader
from tests.integration import rabbitmq_tasks
from tests.integration.rabbitmq_tasks import make_app
from tests.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]


def test_call_returns_before_the_confirm_and_runs(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    url = rabbitmq.url
    app = make_app(url, tmp_path, unique_name("bg"))
    quick = app.task(rabbitmq_tasks.quick)
    try:
        with running_worker(app, threads=2):
            handles = [quick(i) for i in range(50)]
            assert [h.result(timeout=60) for h in handles] == [i + 1 for i in range(50)]
        # Every confirm cleared its invocation's recovery deadline (nothing republished).
        app.close()
        records = app.runtime().state.find(Query())
        assert len(records) == 50
        assert all(r.status is Status.SUCCESS for r in records)
    finally:
        app.close()


def test_failed_background_publish_fails_the_invocation_on_its_handle(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    url = rabbitmq.url
    queue = unique_name("full")
    app = make_app(url, tmp_path, queue, "{max_length: 1}", publish_retries=2)
    quick = app.task(rabbitmq_tasks.quick)
    try:
        accepted = quick(1)
        broker = app.runtime().broker
        wait_until(lambda: broker.stats(queue).ready == 1, "the first message in the queue")
        refused = quick(2)  # returns: its record is durable, its confirm comes later
        with pytest.raises(FleetError, match="nacked by RabbitMQ"):
            refused.result(timeout=60)
        assert refused.status is Status.FAILED
        record = app.record(refused.id)
        assert record.error is not None and record.error.type == "fleet.errors.PublishError"
        assert accepted.status is Status.PENDING
    finally:
        app.close()


PRODUCER = """
import os, signal, sys, threading
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.integration import rabbitmq_tasks
from tests.integration.rabbitmq_tasks import make_app

app = make_app({url!r}, Path({tmp!r}), {queue!r}, pending_timeout=0.5)
quick = app.task(rabbitmq_tasks.quick)
broker = app.runtime().broker
never = threading.Event()
broker.publish = lambda messages: never.wait()  # the confirm never comes back
broker.begin_publish_now = lambda messages: None  # nor is anything sent by the caller
invocation = quick(41)
print(invocation.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # right after the call returned
"""


def test_producer_killed_right_after_a_call_returned_the_invocation_still_runs(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    url = rabbitmq.url
    queue = unique_name("killed")
    script = PRODUCER.format(repo=str(REPO), url=url, tmp=str(tmp_path), queue=queue)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    invocation_id = done.stdout.strip()
    app = make_app(url, tmp_path, queue, pending_timeout=0.5)
    quick = app.task(rabbitmq_tasks.quick)
    try:
        assert app.record(invocation_id).status is Status.PENDING
        assert app.runtime().broker.stats(queue).ready == 0  # nothing was published
        with running_worker(app, threads=1):
            leader = Leader(app, "test-leader")
            start = time.time()
            leader.tick(now=start + 2)  # past the record's deadline: published again
            wait_until(lambda: app.record(invocation_id).status is Status.SUCCESS, "the invocation")
        assert app.invocation(invocation_id).result(timeout=10) == 42
        assert quick.name == app.record(invocation_id).task
    finally:
        app.close()


def test_a_lone_call_is_sent_before_it_returns_and_later_ones_queue_behind_it(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("lone")
    app = make_app(rabbitmq.url, tmp_path, queue)
    quick = app.task(rabbitmq_tasks.quick)
    runtime = app.runtime()
    broker = runtime.broker
    held = threading.Event()

    class Held(_pipeline.Pipeline):
        """A pipeline whose thread does nothing until `held` is set."""

        def _run(self) -> None:
            held.wait()
            super()._run()

    try:
        quick(1)  # through the ordinary pipeline: a connection is pooled, the queue known
        wait_until(lambda: broker.stats(queue).ready == 1, "the first message")
        _pipeline.close(runtime)
        pipeline = _pipeline._by_runtime[runtime] = Held(app, runtime)
        quick(2)  # its message is on the wire when the call returns
        wait_until(lambda: broker.stats(queue).ready == 2, "the lone call's message")
        quick(3)  # the confirm of 2 is not in yet: queued for the thread
        assert len(pipeline._todo) == 1 and broker.stats(queue).ready == 2
        held.set()
        assert pipeline.flush(timeout=30)
        assert broker.stats(queue).ready == 3
    finally:
        held.set()
        app.close()


def test_sending_on_the_callers_thread_never_waits_for_rabbitmq(
    rabbitmq: RabbitMQServer, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("now")
    broker = RabbitMQBroker(rabbitmq.url)
    try:
        broker.declare([QueueSpec(queue)])
        message = Message(queue, b"x", "inv-1")
        publisher = broker.publisher
        assert publisher.begin_now([message]) is None  # no connection to send on yet
        broker.publish([message])  # leaves one in the pool
        unknown = Message(unique_name("unknown"), b"x", "inv-2")
        assert publisher.begin_now([unknown]) is None  # would have to look the queue up
        publishing = publisher.begin_now([message])
        assert publishing is not None
        publishing.wait()
        assert broker.stats(queue).ready == 2
        publisher._idle[-1].link.close(0.2)  # the pooled connection died
        assert publisher.begin_now([message]) is None
        broker.publish([message])  # the ordinary path replaces it
        assert broker.stats(queue).ready == 3
    finally:
        broker.close()
