"""Publisher confirms on a real RabbitMQ through both paths of fleet.broker._amqp_connection:
the fast one (lone basic.ack frames decoded without pika) and pika's own dispatch, used
with pika releases the fast path was not tested with."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleet.broker import Message, _amqp_connection
from fleet.broker.rabbitmq import RabbitMQBroker
from fleet.queues import QueueSpec
from fleet.testing.rabbitmq import RabbitMQServer

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "pika-fallback"])
def test_confirms_arrive_on_either_path(
    rabbitmq: RabbitMQServer,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    fast: bool,
) -> None:
    decoded: list[int] = []
    real = _amqp_connection.confirms

    def counting(data: bytes, channels: object) -> object:
        found = real(data, channels)  # type: ignore[arg-type]
        decoded.append(len(found or ()))
        return found

    monkeypatch.setattr(_amqp_connection, "FAST_PATH", fast)
    monkeypatch.setattr(_amqp_connection, "confirms", counting)
    queue = unique_name("confirms")
    broker = RabbitMQBroker(rabbitmq.url)
    try:
        broker.declare([QueueSpec(queue)])
        for batch in range(5):
            broker.publish([Message(queue, b"x" * 64, f"{batch}-{i}") for i in range(400)])
        assert broker.stats(queue).ready == 2000
    finally:
        broker.close()
    if fast:
        assert sum(decoded) > 0  # confirms were decoded by fleet
    else:
        assert decoded == []  # pika dispatched every frame


def test_the_fast_path_is_kept_to_tested_pika_releases() -> None:
    assert _amqp_connection.fast_path_fits("1.4.4")
    assert not _amqp_connection.fast_path_fits("1.3.2")
    assert not _amqp_connection.fast_path_fits("2.0.0")
