"""`publish_confirm = "background"` on RabbitMQ: a call returns once its record is
durable; the confirm is awaited by a thread of the process (fleet._pipeline).

The guarantee "a call that returned is never lost" rests on the record written before
the return plus recovery: killing the producer right after a call returned, before any
message was published, still runs the invocation. A publish that fails for good makes
the invocation FAILED, seen on its handle.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet import Status
from fleet.errors import FleetError
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
