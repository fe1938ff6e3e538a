"""Connecting to RabbitMQ: errors name the reason, `connect_retry` waits for a late broker."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from fleet.broker import Message
from fleet.broker._amqp_link import LinkError
from fleet.config import load_settings
from fleet.queues import QueueSpec
from fleet.testing._procs import reserve_port
from fleet.testing.rabbitmq import RabbitMQServer
from tests.waiting import wait_until

pytest.importorskip("pika")
pytestmark = pytest.mark.timeout(240)

from fleet.broker.rabbitmq import RabbitMQBroker  # noqa: E402 - needs pika


def test_a_closed_port_is_named_as_connection_refused() -> None:
    reservation = reserve_port()  # reserved, and nobody listens on it
    url = f"amqp://guest:s3cret@127.0.0.1:{reservation.port}/"
    broker = RabbitMQBroker(url, connect_timeout=1.0)
    try:
        with pytest.raises(LinkError) as info:
            broker.listener()
        text = str(info.value)
        assert f"cannot connect to amqp://guest:***@127.0.0.1:{reservation.port}/" in text
        assert "connection refused" in text and "s3cret" not in text
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        with pytest.raises(LinkError, match="connection refused"):
            broker.declare([QueueSpec(f"q-{uuid.uuid4().hex[:8]}")])
    finally:
        broker.close()
    waiting = RabbitMQBroker(url, connect_timeout=1.0, connect_retry=0.3)
    try:
        with pytest.raises(LinkError, match=r"connection refused.*waited 0.3s: connect_retry"):
            waiting.publish([Message("q", b"x", "id-1")])
    finally:
        waiting.close()
        reservation.release()


def test_connect_retry_waits_for_a_broker_started_after_the_producer(
    rabbitmq: RabbitMQServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleet.broker._amqp_admin")
    queue = f"late-{uuid.uuid4().hex[:8]}"
    rabbitmq.stop()  # the ports stay reserved: the producer's URL stays right
    outcome: list[BaseException | None] = []
    broker = RabbitMQBroker(rabbitmq.url, connect_timeout=2.0, connect_retry=180.0)

    def produce() -> None:
        try:
            broker.declare([QueueSpec(queue)])
            broker.publish([Message(queue, b"hello", "id-1")])
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        wait_until(
            lambda: any("waiting for RabbitMQ" in r.getMessage() for r in caplog.records),
            "the producer to retry",
        )
        assert not outcome, outcome  # it waits instead of failing
        assert "connection refused" in caplog.text
        rabbitmq.start()
        thread.join(180)
        assert outcome == [None]
        assert broker.stats(queue).ready == 1
    finally:
        thread.join(5)
        broker.close()


def test_connect_retry_is_a_setting_passed_to_the_broker() -> None:
    settings = load_settings({"connect_retry": 30}, environ={}).settings
    assert settings.connect_retry == 30.0
    broker = RabbitMQBroker("amqp://127.0.0.1:1/", connect_retry=settings.connect_retry)
    assert broker.options.connect_retry == 30.0
    assert "connect_retry" in RabbitMQBroker.SETTINGS
    broker.close()


def test_a_cluster_url_skips_a_dead_node_and_names_every_host_when_all_are_down(
    rabbitmq: RabbitMQServer,
) -> None:
    dead = reserve_port()  # reserved, and nobody listens on it
    url = f"amqp://guest:guest@127.0.0.1:{dead.port},127.0.0.1:{rabbitmq.port}/%2F"
    broker = RabbitMQBroker(url, connect_timeout=2.0)
    queue = f"cluster-{uuid.uuid4().hex[:8]}"
    try:
        broker.declare([QueueSpec(queue)])
        broker.publish([Message(queue, b"x", "id-1")])  # on the live node, by itself
        assert broker.stats(queue).ready == 1
        # The dead node is tried last from now on: the live one worked.
        assert broker.endpoint.candidates()[0] == ("127.0.0.1", rabbitmq.port)
        broker.purge(queue)
    finally:
        broker.close()
    other = reserve_port()
    down = RabbitMQBroker(
        f"amqp://guest:s3cret@127.0.0.1:{dead.port},127.0.0.1:{other.port}/", connect_timeout=1.0
    )
    try:
        with pytest.raises(LinkError) as info:
            down.listener()
        text = str(info.value)
        assert text.startswith("cannot connect to any host of amqp://guest:***@")
        assert f"127.0.0.1:{dead.port}" in text and f"127.0.0.1:{other.port}" in text
        assert text.count("connection refused") == 2 and "s3cret" not in text
    finally:
        down.close()
        dead.release()
        other.release()
