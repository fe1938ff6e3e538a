"""Result notifications to a listener on the same host go past RabbitMQ
(`fleet.broker._amqp_local`), on a real RabbitMQ: the listener receives them while it
waits on its connection, and while that connection is down; a listener without a
doorbell still gets everything through RabbitMQ."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from contextlib import closing

import pytest

from fleet import _doorbell
from fleet.broker import _amqp_listener
from fleet.broker._amqp_consumer import RabbitMQConsumer
from fleet.broker._amqp_local import deliver
from fleet.broker._amqp_params import parse
from fleet.broker.rabbitmq import RabbitMQBroker
from fleet.queues import QueueSpec
from fleet.testing.rabbitmq import RabbitMQServer
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not _doorbell.abstract_supported(), reason="needs Linux's abstract socket namespace"
    ),
]


def _receive_in_thread(listener: _amqp_listener.RabbitMQListener) -> list[bytes]:
    """Start a thread blocked in `receive`; the list fills when it returns."""
    got: list[bytes] = []

    def run() -> None:
        got.extend(listener.receive(timeout=30))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()  # wherever it is by the time a note is sent, the note reaches it
    return got


def test_a_waiting_listener_wakes_for_a_direct_notification(rabbitmq: RabbitMQServer) -> None:
    broker = RabbitMQBroker(rabbitmq.url)
    try:
        with closing(broker.listener()) as listener:
            assert isinstance(listener, _amqp_listener.RabbitMQListener)
            got = _receive_in_thread(listener)
            assert deliver([(listener.address, b"done")]) == []  # nothing left for RabbitMQ
            wait_until(lambda: got, "the notification", timeout=10)
            assert got == [b"done"]
            # The worker's paths deliver the same way, and RabbitMQ's still works.
            broker.notify([(listener.address, b"a"), ("fleet.reply.elsewhere.1.abcdef01", b"b")])
            assert listener.receive(timeout=10) == [b"a"]
    finally:
        broker.close()


def test_a_listener_without_a_doorbell_gets_everything_through_rabbitmq(
    rabbitmq: RabbitMQServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_amqp_listener, "bell", lambda address: None)
    broker = RabbitMQBroker(rabbitmq.url)
    try:
        with closing(broker.listener()) as listener:
            assert deliver([(listener.address, b"x")]) == [(listener.address, b"x")]
            broker.notify([(listener.address, b"one"), (listener.address, b"two")])
            got: list[bytes] = []
            wait_until(lambda: got.extend(listener.receive(timeout=0.05)) or len(got) >= 2)
            assert got == [b"one", b"two"]
    finally:
        broker.close()


def test_direct_notifications_arrive_while_the_connection_is_down(
    rabbitmq: RabbitMQServer,
) -> None:
    broker = RabbitMQBroker(rabbitmq.url)
    try:
        with closing(broker.listener()) as listener, socket.socket() as spare:
            assert isinstance(listener, _amqp_listener.RabbitMQListener)
            spare.bind(("127.0.0.1", 0))  # a port nobody listens on: reconnects fail
            dead = f"amqp://guest:guest@127.0.0.1:{spare.getsockname()[1]}/"
            listener._endpoint = parse(dead, {"connect_timeout": 0.5})
            assert listener._link is not None
            listener._link.close(0.5)
            assert listener.receive(timeout=0.2) == []  # notices the loss; cannot reconnect
            assert listener._link is None
            got = _receive_in_thread(listener)
            assert deliver([(listener.address, b"still here")]) == []
            wait_until(lambda: got, "the notification", timeout=10)
            assert got == [b"still here"]
            assert listener._link is None
    finally:
        broker.close()


def test_a_consumer_that_cannot_publish_leaves_every_note_to_the_publisher(
    rabbitmq: RabbitMQServer, unique_name: Callable[[str], str]
) -> None:
    """The worker hands the notes its consumer refuses to the publisher, whole: the
    consumer must not have rung anyone first (they would hear of it twice)."""
    queue = unique_name("jobs")
    broker = RabbitMQBroker(rabbitmq.url)
    try:
        broker.declare([QueueSpec(queue)])
        with closing(broker.listener()) as listener:
            consumer = broker.consumer((queue,), 8)
            try:
                assert isinstance(consumer, RabbitMQConsumer) and consumer._link is not None
                consumer._link.close(0.5)  # its channel is closed now
                assert consumer.notify([(listener.address, b"once")]) is False
                broker.notify([(listener.address, b"once")])
                got: list[bytes] = []
                wait_until(lambda: got.extend(listener.receive(timeout=0.05)) or got, "the note")
                assert got + listener.receive(timeout=0.2) == [b"once"]
            finally:
                consumer.close()
    finally:
        broker.close()
