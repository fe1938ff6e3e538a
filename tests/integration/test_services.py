"""The test services themselves: a real RabbitMQ node and a MongoDB-wire server work.

Proves the fixtures hand out usable servers: an AMQP round trip, durable queues and
persistent messages surviving a broker restart and a broker crash, the configurable
consumer timeout, no Erlang process left after close, and a MongoDB round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from pymongo import MongoClient
from pymongo.uri_parser import parse_uri

from fleet.testing._procs import alive
from fleet.testing.mongo import MongoServer
from fleet.testing.rabbitmq import RabbitMQServer


@contextmanager
def _channel(server: RabbitMQServer) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(server.url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def _publish_persistent(server: RabbitMQServer, queue: str, bodies: list[bytes]) -> None:
    with _channel(server) as channel:
        channel.queue_declare(queue, durable=True)
        for body in bodies:
            channel.basic_publish(
                "", queue, body, pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
            )


def _drain(server: RabbitMQServer, queue: str) -> list[bytes]:
    got: list[bytes] = []
    with _channel(server) as channel:
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            got.append(body)
    return got


@pytest.mark.rabbitmq
def test_rabbitmq_publish_consume_roundtrip(
    rabbitmq: RabbitMQServer, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("roundtrip")
    with _channel(rabbitmq) as channel:
        channel.queue_declare(queue, auto_delete=True)
        channel.basic_publish("", queue, b"hello")
        received: list[bytes] = []

        def on_message(ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
            received.append(body)
            ch.basic_ack(method.delivery_tag)
            ch.stop_consuming()

        channel.basic_consume(queue, on_message)
        channel.connection.call_later(10, channel.stop_consuming)
        channel.start_consuming()
    assert received == [b"hello"]


@pytest.mark.rabbitmq
def test_durable_queue_and_persistent_messages_survive_restart(
    rabbitmq: RabbitMQServer, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("durable")
    url = rabbitmq.url
    _publish_persistent(rabbitmq, queue, [b"one", b"two"])

    rabbitmq.restart()

    assert rabbitmq.url == url
    assert _drain(rabbitmq, queue) == [b"one", b"two"]


@pytest.mark.rabbitmq
def test_confirmed_persistent_messages_survive_a_crash(
    rabbitmq: RabbitMQServer, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("crash")
    _publish_persistent(rabbitmq, queue, [])
    # RabbitMQ 3.10 acks a declare before Mnesia has it on disk; a clean restart makes
    # the definition durable, so what the crash below tests is the confirmed message.
    rabbitmq.restart()
    _publish_persistent(rabbitmq, queue, [b"kept"])

    rabbitmq.kill()
    assert not rabbitmq.is_running()
    rabbitmq.start()

    assert _drain(rabbitmq, queue) == [b"kept"]


@pytest.mark.rabbitmq
def test_consumer_timeout_closes_channel_and_close_leaves_no_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RabbitMQServer(consumer_timeout=1000, base_dir=tmp_path)
    with server:
        tree = server.processes()
        assert any("beam" in Path(f"/proc/{pid}/cmdline").read_text() for pid, _ in tree)
        connection = pika.BlockingConnection(pika.URLParameters(server.url))
        try:
            channel = connection.channel()
            channel.queue_declare("slow", auto_delete=False)
            channel.basic_publish("", "slow", b"never acked")
            method = None
            deadline = time.monotonic() + 10
            while method is None and time.monotonic() < deadline:
                method, _, _ = channel.basic_get("slow", auto_ack=False)
            assert method is not None
            # The broker enforces the timeout on its channel tick (1 s when it is set).
            while channel.is_open and time.monotonic() < deadline + 20:
                connection.process_data_events(time_limit=0.2)
            assert channel.is_closed
            assert any("delivery acknowledgement on channel" in r.message for r in caplog.records)
        finally:
            if connection.is_open:
                connection.close()
    assert not [pid for pid, started in tree if alive((pid, started))]


@pytest.mark.mongo
def test_mongo_ping_insert_find(mongo_server: MongoServer, mongo_url: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
        db = client.get_default_database()
        assert db.name == mongo_server.database
        db.items.insert_one({"_id": "a", "n": 1})
        assert db.items.find_one({"_id": "a"}) == {"_id": "a", "n": 1}
    finally:
        client.close()


@pytest.mark.mongo
def test_mongo_db_url_is_a_fresh_database(mongo_url: str, mongo_db_url: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db_url, serverSelectionTimeoutMS=5000)
    try:
        db = client.get_default_database()
        assert db.name != parse_uri(mongo_url)["database"]
        assert db.list_collection_names() == []
    finally:
        client.close()
