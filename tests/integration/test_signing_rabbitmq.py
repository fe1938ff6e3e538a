"""Signed messages on a real RabbitMQ: a worker with keys dead-letters forged and
unsigned messages with the reason (their records untouched), accepts a producer still on
the rotated-out key, and signatures survive the urgent lane (tasks waiting on tasks)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet._envelope import Envelope, pack
from fleet._prepare import new_id
from fleet.broker import Message
from fleet.signing import HEADER
from fleet.state import InvocationRecord
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import running_worker
from tests.integration import rabbitmq_tasks
from tests.integration.rabbitmq_tasks import make_app
from tests.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]

NEW = "prod-2:" + "N" * 40
OLD = "prod-1:" + "O" * 40


def _publish_raw(app: Fleet, queue: str, task: str, headers: dict[str, str]) -> tuple[str, bytes]:
    """A PENDING record and a message for it, published by someone with queue access."""
    runtime = app.runtime()
    runtime.declare([queue])
    invocation_id, now = new_id(), time.time()
    args = b"\x92\x91\x01\x80"
    runtime.state.register(
        [
            InvocationRecord(
                invocation_id,
                task,
                queue,
                args,
                "msgpack",
                Status.PENDING,
                created=now,
                updated=now,
            )
        ]
    )
    body = pack(Envelope(invocation_id, task, args, "msgpack"))
    runtime.broker.publish([Message(queue, body, invocation_id, 0, headers)])
    return invocation_id, body


def test_forged_and_unsigned_messages_are_dead_lettered_with_the_reason(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("signed")
    app = make_app(rabbitmq.url, tmp_path, queue, signing_keys=f"{NEW},{OLD}")
    quick = app.task(rabbitmq_tasks.quick)
    old_producer = make_app(rabbitmq.url, tmp_path, queue, signing_keys=OLD)
    try:
        with running_worker(app, threads=2):
            assert quick(1).result(timeout=60) == 2
            unsigned_id, unsigned = _publish_raw(app, queue, quick.name, {})
            forged_mac = hmac.new(b"guess" * 8, b"anything", hashlib.sha256).hexdigest()
            forged_id, forged = _publish_raw(
                app, queue, quick.name, {HEADER: f"prod-2:{forged_mac}"}
            )
            broker = app.runtime().broker

            def reasons() -> dict[bytes, str]:
                return {d.body: d.reason for d in broker.dead_letters(queue)}

            wait_until(lambda: {unsigned, forged} <= set(reasons()), "both dead-lettered")
            assert "unsigned message" in reasons()[unsigned]
            assert reasons()[forged] == "forged message: signature does not match key 'prod-2'"
            # Rotation: a producer not yet on the new key is still served.
            assert old_producer.task(rabbitmq_tasks.quick)(41).result(timeout=60) == 42
        assert app.record(unsigned_id).status is Status.PENDING  # never decoded nor claimed
        assert app.record(forged_id).status is Status.PENDING
        assert len(broker.dead_letters(queue)) == 2
    finally:
        old_producer.close()
        app.close()


def test_signatures_survive_the_urgent_lane(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("signedfib")
    app = make_app(rabbitmq.url, tmp_path, queue, signing_keys=NEW)
    rabbitmq_tasks.TASKS["fib"] = fib = app.task(rabbitmq_tasks.fib)
    try:
        with running_worker(app, threads=2):
            assert fib(8).result(timeout=120) == 21
        assert app.runtime().broker.stats(queue).dead == 0
    finally:
        rabbitmq_tasks.TASKS.pop("fib", None)
        app.close()


def test_messages_signed_by_a_key_a_worker_lacked_run_once_requeued(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    """Rotation done in the wrong order: producers sign with a key the workers do not list
    yet. The letters keep their signature through the dead-letter queue; once the workers
    know the key, `fleet deadletters requeue` runs them."""
    from fleet.cli.deadletters import requeue

    queue = unique_name("rotated")
    producer = make_app(rabbitmq.url, tmp_path, queue, signing_keys=NEW)
    lagging = make_app(rabbitmq.url, tmp_path, queue, signing_keys=OLD)
    updated = make_app(rabbitmq.url, tmp_path, queue, signing_keys=f"{NEW},{OLD}")
    quick = producer.task(rabbitmq_tasks.quick)
    for app in (lagging, updated):
        app.task(rabbitmq_tasks.quick)
    try:
        with running_worker(lagging):
            handle = quick(1)
            broker = producer.runtime().broker
            wait_until(lambda: broker.stats(queue).dead == 1, "the letter")
        (letter,) = broker.dead_letters(queue)
        assert letter.reason == "signed with unknown key id 'prod-2' (accepted: prod-1)"
        assert producer.record(handle.id).status is Status.PENDING  # not decoded, untouched
        with running_worker(updated):
            assert requeue(producer, queue) == (1, [])
            assert handle.result(timeout=60) == 2
        assert broker.stats(queue).dead == 0
    finally:
        for app in (producer, lagging, updated):
            app.close()


@pytest.mark.asyncio
async def test_async_submits_through_aio_pika_are_signed(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    from fleet.aio import aclose

    queue = unique_name("signedaio")
    app = make_app(rabbitmq.url, tmp_path, queue, signing_keys=NEW)
    quick = app.task(rabbitmq_tasks.quick)
    try:
        with running_worker(app, threads=2):
            handles = [await quick.acall(i) for i in range(20)]
            assert [await h.aresult(timeout=60) for h in handles] == list(range(1, 21))
        assert app.runtime().broker.stats(queue).dead == 0
    finally:
        await aclose(app)
        app.close()
