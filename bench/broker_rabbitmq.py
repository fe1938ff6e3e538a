"""Broker-level benchmark: `RabbitMQBroker` against plain pika, measured in one run.

Run: `python -m bench.broker_rabbitmq` (starts a RabbitMQ node of its own on loopback
ports, prints the figures, writes nothing).

What is measured, 3 repetitions each, on fresh quorum queues (fleet's default type):
- "one by one": 10,000 small messages, each published with a publisher confirm awaited
  before the next (plain pika: `BlockingChannel` in confirm mode; fleet:
  `broker.publish([message])`), then all consumed with manual acks (prefetch 100;
  plain pika: `basic_consume` with a `basic_ack` per message; fleet:
  `consumer.receive(100)` and `consumer.ack(batch)`).
- "batches of 100": the same, published 100 messages per call with the confirms
  pipelined (plain pika: the asynchronous `SelectConnection` API, publish 100 then wait
  for their confirms; fleet: `broker.publish(list_of_100)`).
Throughput is messages / (publish time + consume time); the ratio is fleet's median
over plain pika's median. Per-publish latency is reported for the one-by-one mode.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable

import pika
from pika.adapters.select_connection import SelectConnection

from fleet.broker import Message
from fleet.broker.rabbitmq import RabbitMQBroker
from fleet.queues import QueueSpec
from fleet.testing.rabbitmq import RabbitMQServer

N = 10_000
BATCH = 100
PREFETCH = 100
REPETITIONS = 3
Result = tuple[float, float]
"""(seconds publishing, seconds consuming)."""


def _queue() -> str:
    return f"bench-{uuid.uuid4().hex[:10]}"


def _declare_raw(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> None:
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})


def _consume_raw(url: str, queue: str) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        got = [0]

        def on_message(ch: object, method: pika.spec.Basic.Deliver, *_: object) -> None:
            channel.basic_ack(method.delivery_tag)
            got[0] += 1

        start = time.perf_counter()
        channel.basic_consume(queue, on_message)
        while got[0] < N:
            connection.process_data_events(time_limit=1)
        elapsed = time.perf_counter() - start
        channel.queue_delete(queue)
        return elapsed
    finally:
        connection.close()


def raw_one_by_one(url: str) -> Result:
    queue = _queue()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        _declare_raw(channel, queue)
        channel.confirm_delivery()
        persistent = pika.BasicProperties(delivery_mode=2)
        start = time.perf_counter()
        for i in range(N):
            channel.basic_publish("", queue, b"m%d" % i, persistent, mandatory=True)
        published = time.perf_counter() - start
    finally:
        connection.close()
    return published, _consume_raw(url, queue)


def raw_batches(url: str) -> Result:
    """Plain pika's asynchronous API: publish a batch, then wait for its confirms."""
    queue = _queue()
    setup = pika.BlockingConnection(pika.URLParameters(url))
    _declare_raw(setup.channel(), queue)
    setup.close()
    state = {"sent": 0, "confirmed": 0, "start": 0.0, "end": 0.0}
    persistent = pika.BasicProperties(delivery_mode=2)

    def publish_batch(channel: pika.channel.Channel) -> None:
        for _ in range(BATCH):
            channel.basic_publish("", queue, b"m%d" % state["sent"], persistent, mandatory=True)
            state["sent"] += 1

    def on_confirm(frame: pika.frame.Method, channel: pika.channel.Channel) -> None:
        tag = frame.method.delivery_tag
        state["confirmed"] = tag if frame.method.multiple else max(state["confirmed"], tag)
        if state["confirmed"] >= state["sent"]:
            if state["sent"] >= N:
                state["end"] = time.perf_counter()
                connection.close()
            else:
                publish_batch(channel)

    def on_channel(channel: pika.channel.Channel) -> None:
        def ready(_frame: object) -> None:
            state["start"] = time.perf_counter()
            publish_batch(channel)

        channel.confirm_delivery(lambda frame: on_confirm(frame, channel), ready)

    connection = SelectConnection(
        pika.URLParameters(url),
        on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
        on_close_callback=lambda *_: connection.ioloop.stop(),
    )
    connection.ioloop.start()
    connection.ioloop.close()
    return state["end"] - state["start"], _consume_raw(url, queue)


def _fleet(url: str, publish: Callable[[RabbitMQBroker, list[Message]], None]) -> Result:
    broker = RabbitMQBroker(url)
    try:
        queue = _queue()
        broker.declare([QueueSpec(queue)])
        messages = [Message(queue, b"m%d" % i, f"i{i}") for i in range(N)]
        broker.publish(messages[:1])  # a warm connection, as the raw loop has
        broker.purge(queue)
        start = time.perf_counter()
        publish(broker, messages)
        published = time.perf_counter() - start
        consumer = broker.consumer([queue], prefetch=PREFETCH)
        got = 0
        start = time.perf_counter()
        while got < N:
            deliveries = consumer.receive(PREFETCH, timeout=5)
            consumer.ack(deliveries)
            got += len(deliveries)
        consumed = time.perf_counter() - start
        consumer.close()
        return published, consumed
    finally:
        broker.close()


def fleet_one_by_one(url: str) -> Result:
    def publish(broker: RabbitMQBroker, messages: list[Message]) -> None:
        for message in messages:
            broker.publish([message])

    return _fleet(url, publish)


def fleet_batches(url: str) -> Result:
    def publish(broker: RabbitMQBroker, messages: list[Message]) -> None:
        for i in range(0, len(messages), BATCH):
            broker.publish(messages[i : i + BATCH])

    return _fleet(url, publish)


def _summary(results: list[Result]) -> tuple[float, float, float]:
    rates = [N / (p + c) for p, c in results]
    return statistics.median(rates), min(rates), max(rates)


def main() -> int:
    with RabbitMQServer() as server:
        url = server.url
        print(f"RabbitMQ {server.url.replace('guest:guest@', '')}; {N} messages x {REPETITIONS}")
        for mode, raw, fleet in (
            ("one by one", raw_one_by_one, fleet_one_by_one),
            (f"batches of {BATCH}", raw_batches, fleet_batches),
        ):
            raw_runs: list[Result] = []
            fleet_runs: list[Result] = []
            for _ in range(REPETITIONS):  # interleaved, so drift hits both alike
                raw_runs.append(raw(url))
                fleet_runs.append(fleet(url))
            (rm, rlo, rhi), (fm, flo, fhi) = _summary(raw_runs), _summary(fleet_runs)
            print(f"\n{mode}: publish with confirms + consume with acks, messages/s")
            print(f"  plain pika      median {rm:8.0f}  (min {rlo:.0f}, max {rhi:.0f})")
            print(f"  RabbitMQBroker  median {fm:8.0f}  (min {flo:.0f}, max {fhi:.0f})")
            print(f"  ratio fleet/pika: {fm / rm:.2f}")
            if mode == "one by one":
                raw_us = statistics.median(p for p, _ in raw_runs) / N * 1e6
                fleet_us = statistics.median(p for p, _ in fleet_runs) / N * 1e6
                print(
                    f"  publish latency (confirmed), median of runs: plain pika "
                    f"{raw_us:.0f} us, RabbitMQBroker {fleet_us:.0f} us"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
