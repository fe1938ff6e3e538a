"""What a RabbitMQ consumer holds, and every way it lets go of a delivery.

Job: track the unsettled deliveries of one consumer connection and settle them: ack,
nack back to the queue, copy-then-ack (hand-backs, classic-queue releases), and
dead-letter with a reason. `fleet.broker._amqp_consumer` explains why none of this
can lose a message.

Contract:
- `held` maps each unsettled delivery tag of the current connection to its lane; `out`
  is the part handed to the owner by `receive`. A delivery of an earlier connection
  (see `Tag.link`) or one already settled is ignored by every method: RabbitMQ
  redelivers it, and the worker's claim deduplicates.
- `ack` never raises (the dispatcher acks after its claims took effect; an exception
  there would strand them). It settles the deliveries at once but keeps their acks
  back until `ack_batch` of them wait or for up to `ACK_DELAY` seconds (the consumer
  sends them before it blocks past that, and before anything else settles its
  deliveries in bulk), so acks of deliveries that arrive close together share one
  `multiple` frame when they cover every held delivery up to the highest tag. An ack
  kept back when the connection is lost is lost with it: RabbitMQ redelivers, and the
  claim deduplicates.
- `copy` acks an original only once its copy is confirmed; a refused copy is nacked
  back instead (it then counts as a delivery, but is not lost).
- `dead_letter` publishes to the queue's dead-letter exchange with `x-fleet-reason`,
  `x-fleet-queue` and `x-fleet-at`, then acks; if the copy is not confirmed it raises
  `BrokerError` and the original comes back. Without a dead-letter exchange
  (`dead_letter: false`) the message is acked and dropped, with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.channel import Channel

from fleet._value_class import value_class
from fleet.broker import Delivery
from fleet.broker._amqp_confirms import ConfirmChannel, Outgoing
from fleet.broker._amqp_link import Link, LinkError
from fleet.broker._amqp_queues import AT, PRIOR, QUEUE, REASON, QueueInfo
from fleet.errors import BrokerError

log = logging.getLogger("fleet.broker._amqp_consumer")
_BOOKKEEPING = ("x-delivery-count", "x-death")
ACK_DELAY = 0.02
"""Longest an ack waits to share a frame (and a socket write) with later ones."""


@value_class
class Tag:
    """`Delivery.tag` of the RabbitMQ broker."""

    link: int
    """Which connection of the consumer delivered it (stale after a reconnect)."""
    delivery_tag: int
    lane: str
    properties: pika.BasicProperties = field(compare=False)


@dataclass(eq=False, slots=True)
class Lane:
    """One `basic.consume`: queue `q` or its urgent lane `q.urgent`."""

    name: str
    queue: str
    urgent: bool
    prefetch: int = 0
    consumer_tag: str = ""


class Holding:
    """The unsettled deliveries of one consumer and the ways to settle them."""

    def __init__(self, infos: Mapping[str, QueueInfo]) -> None:
        self._infos = dict(infos)
        self._link: Link | None = None
        self._channel: Channel | None = None
        self._confirms: ConfirmChannel | None = None
        self._generation = 0
        self._held: dict[int, Lane] = {}
        self._out: set[int] = set()
        self._acks: list[int] = []
        """Tags acked by the owner and not sent yet (see `ACK_DELAY`)."""
        self._ack_due = 0.0
        self.ack_batch = 1
        """Acks kept back that make `ack` send them at once (they hold prefetch credit)."""

    def _lost(self, exc: BaseException) -> None:
        raise NotImplementedError  # the consumer forgets its connection

    def _mine(self, deliveries: Sequence[Delivery]) -> list[tuple[Delivery, Tag]]:
        """The deliveries this consumer still holds, with their tags."""
        out = []
        for delivery in deliveries:
            tag = delivery.tag
            if not isinstance(tag, Tag):
                raise BrokerError(f"not a delivery of the RabbitMQ broker: {delivery!r}")
            if tag.link == self._generation and tag.delivery_tag in self._held:
                out.append((delivery, tag))
            else:
                log.debug("delivery %s is no longer held (settled, or its connection lost)", tag)
        return out

    def _settle(self, tag: int, ack: bool) -> None:
        channel = self._channel
        assert channel is not None
        self._held.pop(tag, None)
        self._out.discard(tag)
        if ack:
            channel.basic_ack(tag)
        else:
            channel.basic_nack(tag, requeue=True)

    def _confirmed(self, items: Sequence[Outgoing]) -> list[str | None]:
        link = self._link
        assert link is not None
        if self._confirms is None or not self._confirms.alive:
            self._confirms = ConfirmChannel(link)
        return self._confirms.publish(items)

    def _copy(self, deliveries: Sequence[Delivery]) -> None:
        """Publish copies (carrying the deliveries made before), then ack the originals."""
        held = self._mine(deliveries)
        if not held:
            return
        items = [
            Outgoing("", tag.lane, d.message.body, copy_properties(tag, d.delivery_count - 1))
            for d, tag in held
        ]
        for (delivery, tag), why in zip(held, self._confirmed(items), strict=True):
            if why is not None:
                log.info("copy of %s refused (%s); requeued", delivery.message.invocation_id, why)
            self._settle(tag.delivery_tag, ack=why is None)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        tags = [tag.delivery_tag for _, tag in self._mine(deliveries)]
        if not tags:
            return
        for t in tags:
            self._held.pop(t, None)
        self._out.difference_update(tags)
        if not self._acks:
            self._ack_due = time.monotonic() + ACK_DELAY
        self._acks += tags
        if len(self._acks) >= self.ack_batch:
            self._send_acks()

    def _send_acks(self) -> None:
        """Send the acks `ack` kept back: one `multiple` frame up to the highest tag when
        no delivery still held lies below it, else one frame per tag. Never raises."""
        tags, self._acks = self._acks, []
        channel, link = self._channel, self._link
        if not tags or channel is None or link is None:
            return
        try:
            top = max(tags)
            if all(t > top for t in self._held):
                channel.basic_ack(top, multiple=True)
            else:
                for t in sorted(tags):
                    channel.basic_ack(t)
            link.pump()
        except Exception as exc:
            log.info("acks not sent (%s); RabbitMQ will redeliver, claims deduplicate", exc)
            if isinstance(exc, LinkError):
                self._lost(exc)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        held = self._mine(deliveries)
        link = self._link
        if not held or link is None:
            return
        try:
            classic = []
            for delivery, tag in held:
                if "x-delivery-count" in (tag.properties.headers or {}):
                    self._settle(tag.delivery_tag, ack=False)  # a quorum queue counts it
                else:
                    classic.append(Delivery(delivery.message, tag, delivery.delivery_count + 1))
            self._copy(classic)
            link.pump()
        except LinkError as exc:
            self._lost(exc)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        held = self._mine([delivery])
        if not held:
            return
        tag, queue = held[0][1], delivery.message.queue
        if not self._infos[queue].dead_letter:
            log.warning(
                "queue %r has no dead-letter queue: dropped %s (%s)",
                queue,
                delivery.message.invocation_id,
                reason,
            )
            self._settle(tag.delivery_tag, ack=True)
            return
        headers = bookkept(tag.properties)
        headers.update({REASON: str(reason), QUEUE: queue, AT: repr(time.time())})
        headers[PRIOR] = delivery.delivery_count
        props = copy_properties(tag, delivery.delivery_count, headers)
        item = Outgoing(f"{queue}.dlx", queue, delivery.message.body, props)
        try:
            (why,) = self._confirmed([item])
        except LinkError as exc:
            self._lost(exc)
            raise BrokerError(f"dead-lettering a message of {queue!r} failed: {exc}") from exc
        if why is not None:
            raise BrokerError(f"dead-lettering a message of {queue!r} failed: {why}")
        self._settle(tag.delivery_tag, ack=True)


def bookkept(props: pika.BasicProperties) -> dict[str, Any]:
    """The headers of a message without RabbitMQ's bookkeeping."""
    return {k: v for k, v in (props.headers or {}).items() if k not in _BOOKKEEPING}


def copy_properties(
    tag: Tag, prior: int, headers: dict[str, Any] | None = None
) -> pika.BasicProperties:
    """Properties of a copy: the original's, with the deliveries made before it."""
    props = tag.properties
    if headers is None:
        headers = bookkept(props)
        headers[PRIOR] = prior
    return pika.BasicProperties(
        delivery_mode=2,
        message_id=props.message_id,
        correlation_id=props.correlation_id,
        priority=props.priority,
        headers=headers,
    )
