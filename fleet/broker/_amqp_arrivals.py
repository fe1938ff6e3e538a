"""A RabbitMQ consumer's deliveries, from their arrival until `receive` hands them out.

Job: record each delivery as it arrives, count its deliveries, sort it into the urgent
or the normal buffer (or copy or dead-letter it first), and hand the buffered ones out,
urgent ones first. `fleet.broker._amqp_consumer` explains the design.

Contract:
- `_arrived` only records (it runs inside pika's I/O loop, where publishing would
  re-enter the loop); `_sort` acts on what arrived, after the drive.
- Delivery counts: quorum queues count returns in `x-delivery-count`; copies carry the
  deliveries made before them in `x-fleet-prior`; `delivery_count` = prior + returns +
  1. Classic queues count nothing, so a redelivered classic message (its consumer died)
  is copied with prior + 1 before anyone sees it. A delivery past the queue's delivery
  limit (when this process declared the queue) is dead-lettered, not handed out.
- `_take` hands out urgent deliveries first, and normal ones once `_ready` says so:
  when no urgent one known to be waiting (`_expect_urgent`, counted when consuming
  starts) is still due, or `_urgent_until` has passed. Each one handed out joins `out`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

import pika
from pika.channel import Channel
from pika.spec import Basic

from fleet.broker import Delivery, Message
from fleet.broker._amqp_holding import Holding, Lane, Tag
from fleet.broker._amqp_queues import PRIOR, QueueInfo, user_headers

URGENT_WAIT = 0.5
"""Longest normal deliveries are held back for urgent ones known to be waiting."""
_Arrival = tuple[Lane, int, bool, pika.BasicProperties, bytes]
"""(lane, delivery tag, redelivered, properties, body) of a delivery."""


class Arrivals(Holding):
    """The deliveries of one consumer not handed out yet, and how they come in."""

    def __init__(self, infos: Mapping[str, QueueInfo]) -> None:
        super().__init__(infos)
        self._urgent: deque[tuple[float, Delivery]] = deque()
        self._normal: deque[tuple[float, Delivery]] = deque()
        self._incoming: deque[_Arrival] = deque()
        self._expect_urgent = 0
        self._urgent_until = 0.0

    def _on_message_of(self, lane: Lane) -> Callable[..., None]:
        def on_message(
            _channel: Channel, method: Basic.Deliver, props: pika.BasicProperties, body: bytes
        ) -> None:
            self._arrived(lane, method.delivery_tag, bool(method.redelivered), props, body)

        return on_message

    def _arrived(
        self, lane: Lane, tag: int, redelivered: bool, props: pika.BasicProperties, body: bytes
    ) -> None:
        # Inside pika's I/O loop: only record; `_sort` acts after the drive
        # (publishing from here would re-enter the loop).
        self._held[tag] = lane
        self._incoming.append((lane, tag, redelivered, props, body))

    def _sort(self) -> None:
        """Buffer what arrived; copy classic redeliveries; dead-letter over-limit ones."""
        while self._incoming:
            lane, delivery_tag, redelivered, props, body = self._incoming.popleft()
            headers = props.headers or {}
            prior = int(headers.get(PRIOR, 0) or 0)
            returns = headers.get("x-delivery-count")
            classic_retry = returns is None and redelivered
            count = prior + (int(returns) if returns is not None else int(classic_retry)) + 1
            message = Message(
                lane.queue, body, props.correlation_id or "", props.priority or 0,
                user_headers(headers),
            )  # fmt: skip
            tag = Tag(self._generation, delivery_tag, lane.name, props)
            delivery = Delivery(message, tag, count)
            spec = self._infos[lane.queue].spec
            if classic_retry:
                self._copy([delivery])  # count the lost delivery before anyone sees it
            elif spec is not None and spec.delivery_limit and count > spec.delivery_limit:
                self.dead_letter(delivery, f"delivery limit {spec.delivery_limit} exceeded")
            else:
                buffer = self._urgent if lane.urgent else self._normal
                buffer.append((time.monotonic(), delivery))

    def _ready(self, max_messages: int) -> bool:
        if max_messages <= 0:
            return False
        if self._urgent:
            return True
        if not self._normal:
            return False
        return self._expect_urgent <= 0 or time.monotonic() >= self._urgent_until

    def _take(self, max_messages: int) -> list[Delivery]:
        out: list[Delivery] = []
        while self._urgent and len(out) < max_messages:
            out.append(self._urgent.popleft()[1])
            self._expect_urgent -= 1
        if self._ready(max_messages):
            while self._normal and len(out) < max_messages:
                out.append(self._normal.popleft()[1])
        for delivery in out:
            assert isinstance(delivery.tag, Tag)
            self._out.add(delivery.tag.delivery_tag)
        return out
