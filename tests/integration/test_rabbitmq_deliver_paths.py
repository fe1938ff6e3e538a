"""Deliveries on a real RabbitMQ through both paths of fleet.broker._amqp_connection: decoded
straight from the socket data (`fleet.broker._amqp_frames`), the rest of each read
the start of a delivery cut by the end of a read kept for the next; and pika's own
dispatch alone, used with pika releases the fast path was
not tested with. Small messages arrive many to a read; large ones span several body
frames and several reads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleet.broker import Message, _amqp_connection
from fleet.broker.rabbitmq import RabbitMQBroker
from fleet.queues import QueueSpec
from fleet.testing.rabbitmq import RabbitMQServer

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "pika-fallback"])
def test_deliveries_arrive_whole_on_either_path(
    rabbitmq: RabbitMQServer,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    fast: bool,
) -> None:
    reads: list[tuple[int, int, int, bool]] = []  # (decoded, bytes used, bytes, kept)
    real = _amqp_connection.deliveries

    def counting(data: bytes, channels: object) -> object:
        found, used, more = real(data, channels)  # type: ignore[arg-type]
        reads.append((len(found), used, len(data), more))
        return found, used, more

    monkeypatch.setattr(_amqp_connection, "FAST_PATH", fast)
    monkeypatch.setattr(_amqp_connection, "deliveries", counting)
    queue = unique_name("deliveries")
    sent = [
        Message(queue, bytes([i % 256]) * (300_000 if i % 50 == 7 else 40 + i % 90), f"id-{i}",
                headers={"k": f"v{i}", "n": str(i)})
        for i in range(400)
    ]  # fmt: skip
    broker = RabbitMQBroker(rabbitmq.url)
    try:
        broker.declare([QueueSpec(queue), QueueSpec(queue + ".replies")])
        broker.publish(sent)
        consumer = broker.consumer((queue,), 64)
        notes = [(queue + ".replies", bytes([i]) * (1 + i * 3000)) for i in range(50)]
        assert consumer.notify(notes)  # encoded by fleet or by pika, sent with the acks
        got = []
        while len(got) < len(sent):
            deliveries = consumer.receive(64, timeout=10)
            assert deliveries, f"only {len(got)} of {len(sent)} arrived"
            got += deliveries
            consumer.ack(deliveries)
        consumer.close()
        assert broker.stats(queue).ready == 0
        replies = broker.consumer((queue + ".replies",), 64)
        echoed = []
        while len(echoed) < len(notes):
            arrived = replies.receive(64, timeout=10)
            assert arrived, f"only {len(echoed)} of {len(notes)} notifications arrived"
            echoed += [d.message.body for d in arrived]
            replies.ack(arrived)
        replies.close()
        assert sorted(echoed) == sorted(body for _, body in notes)
    finally:
        broker.close()
    by_id = {d.message.invocation_id: d.message for d in got}
    assert len(by_id) == len(sent) == len(got)
    for message in sent:
        assert by_id[message.invocation_id].body == message.body
        assert by_id[message.invocation_id].headers == message.headers
    if fast:
        assert sum(n for n, *_ in reads) == len(sent) + len(notes)  # none through pika
        assert any(n > 1 for n, *_ in reads)  # several in one read
        assert any(more for *_, more in reads)  # cut by the end of a read: kept
    else:
        assert reads == []  # pika dispatched every frame
