"""The production broker: RabbitMQ, through pika, with publisher confirms everywhere.

Job: implement the `Broker` contract on RabbitMQ (3.10 or later) so that it is as
trustworthy as RabbitMQ itself: nothing accepted is lost, nothing unconfirmed is
reported as sent, poison messages are set aside with a reason, and producers and
workers ride out broker restarts.

Contract, beyond `fleet.broker` (the parts live in private modules, each documented):
- Settings (`fleet.broker._amqp_params`): `amqp://user:pass@host:port/vhost?...` or
  `amqps://` with TLS options; `publish_timeout`, `publish_retries`, `connect_timeout`,
  `connect_retry` (also taken from fleet's settings, see `SETTINGS`), `handoff_after`,
  `pool_size`. With `connect_retry` N > 0, the first use of the broker (declare,
  publish, consume, listen) waits up to N seconds for RabbitMQ, retrying with backoff.
  `self.url` and every message are free of credentials.
- Queues (`fleet.broker._amqp_queues`, `fleet.broker._amqp_admin`): a `QueueSpec`
  becomes a durable queue (quorum by default), its urgent lane `q.urgent`, and a
  dead-letter exchange `q.dlx` bound to `q.dead`. Publishing to or consuming from a
  queue nobody declared declares it with the default spec; an existing queue is used
  as it is. A clashing declaration raises `QueueMismatchError` listing every
  difference.
- Publishing (`fleet.broker._amqp_publisher`): persistent, mandatory, confirmed,
  pipelined, retried across connection loss, then `PublishError`. URGENT messages go
  to the urgent lane. `begin_publish` writes the messages to the socket before it
  returns; its `wait()` collects the confirms (and makes the retries).
- Consuming (`fleet.broker._amqp_consumer`): manual acks, per-lane prefetch, urgent
  lanes first, hand-back of prefetched messages nobody asked for, exact delivery
  counts, explicit dead letters with `x-fleet-reason`; its docstring states why this
  loses nothing.
- Notifications (`fleet.broker._amqp_listener`): one exclusive queue per listener,
  transient messages, no confirms; to a listener on the same host, a Unix datagram
  instead (`fleet.broker._amqp_local`).
- Dead letters: `dead_letters` peeks at `q.dead` (basic.get, then the channel closes so
  RabbitMQ puts them back in order); the reason comes from `x-fleet-reason` or
  RabbitMQ's `x-death` ('expired', 'delivery limit N exceeded', 'max length ...').
  A letter's id is its AMQP message id (unique per published message). `redrive`
  publishes copies to `q` (confirmed, bookkeeping headers dropped, so the delivery
  count starts again at 1) before it acks the letters.
- `stats`: ready = `q` + `q.urgent`; unacked = -1 (AMQP cannot tell); dead = `q.dead`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import pika
from pika.channel import Channel
from pika.spec import Basic

from fleet.broker import Broker, DeadLetter, Message, Publishing, QueueStats, _common
from fleet.broker._amqp_admin import NOT_FOUND, Admin
from fleet.broker._amqp_confirms import Outgoing
from fleet.broker._amqp_consumer import RabbitMQConsumer
from fleet.broker._amqp_link import ChannelError, Link, LinkError
from fleet.broker._amqp_listener import RabbitMQListener
from fleet.broker._amqp_params import Endpoint, parse
from fleet.broker._amqp_publisher import Publisher
from fleet.broker._amqp_queues import reason_of, urgent_lane, user_headers
from fleet.errors import BrokerError
from fleet.queues import QueueSpec

log = logging.getLogger(__name__)
MAX_REDRIVE = 100_000
"""Most dead letters one `redrive` call moves."""


class RabbitMQBroker(Broker):
    """See the module docstring."""

    sends_early = True
    SETTINGS = ("publish_timeout", "publish_retries", "connect_timeout", "connect_retry")
    """fleet settings passed to the constructor by `fleet.broker.open_broker`."""

    def __init__(self, url: str, **options: object) -> None:
        self.endpoint: Endpoint = parse(url, options)
        self.url = self.endpoint.url
        self.options = self.endpoint.options
        self.admin = Admin(self.endpoint)
        self.publisher = Publisher(self.endpoint, self.admin)
        self._children: weakref.WeakSet[RabbitMQConsumer | RabbitMQListener] = weakref.WeakSet()
        self._closed = False
        self._started = self.options.connect_retry <= 0
        self._start_lock = threading.Lock()

    def _start(self) -> None:
        """At the first use, wait up to `connect_retry` seconds for RabbitMQ."""
        if self._started:
            return
        with self._start_lock:
            if not self._started:
                self.admin.wait_for(self.options.connect_retry)
                self._started = True

    def __repr__(self) -> str:
        return f"RabbitMQBroker({self.url!r})"

    # -- queues and messages ------------------------------------------------------------

    def declare(self, queues: Sequence[QueueSpec]) -> None:
        self._start()
        self.admin.declare(queues)

    def publish(self, messages: Sequence[Message]) -> None:
        _common.check_messages(messages)
        self._start()
        self.publisher.publish(messages)

    def begin_publish(self, messages: Sequence[Message]) -> Publishing:
        _common.check_messages(messages)
        self._start()
        return self.publisher.begin(messages)

    def consumer(self, queues: Sequence[str], prefetch: int) -> RabbitMQConsumer:
        _common.check_prefetch(prefetch)
        self._start()
        consumer = RabbitMQConsumer(self, _common.check_queues(queues), prefetch)
        self._children.add(consumer)
        return consumer

    def listener(self) -> RabbitMQListener:
        self._start()
        listener = RabbitMQListener(self.endpoint)
        self._children.add(listener)
        return listener

    def notify(self, notes: Sequence[tuple[str, bytes]]) -> None:
        self.publisher.notify(notes)

    # -- inspection and management --------------------------------------------------------

    def purge(self, queue: str) -> int:
        return sum(self._purge(name) for name in (queue, urgent_lane(queue)))

    def _purge(self, name: str) -> int:
        try:
            frame = self.admin.rpc("queue_purge", name)
        except ChannelError as exc:
            if exc.code == NOT_FOUND:
                return 0
            raise
        return int(frame.method.message_count)

    def stats(self, queue: str) -> QueueStats:
        main = self.admin.counts(queue)
        if main is None:
            return QueueStats(queue, 0, -1, 0, 0, declared=False)
        urgent = self.admin.counts(urgent_lane(queue))
        dead = self.admin.counts(f"{queue}.dead")
        ready = main[0] + (urgent[0] if urgent else 0)
        return QueueStats(queue, ready, -1, main[1], dead[0] if dead else 0)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        dead = f"{queue}.dead"
        counts = self.admin.counts(dead)
        if counts is None or limit <= 0:
            return []
        letters: list[DeadLetter] = []
        with self.admin.session() as (link, channel):
            getter = _Getter(link, channel)
            for _ in range(limit):
                got = getter.get(dead)
                if got is None:
                    break
                letters.append(self._letter(queue, got[1], got[2]))
        self.admin.await_ready(dead, counts[0])  # the peeked letters are back
        return letters

    def _letter(self, queue: str, props: pika.BasicProperties, body: bytes) -> DeadLetter:
        reason, source, at = reason_of(props.headers, self.admin.spec, queue)
        return DeadLetter(
            source, body, reason, _letter_id(props, body), at, user_headers(props.headers)
        )

    def redrive(self, queue: str, ids: Sequence[str] | None = None) -> int:
        wanted = None if ids is None else {str(i) for i in ids}
        if wanted is not None and not wanted:
            return 0
        dead = f"{queue}.dead"
        counts = self.admin.counts(dead)
        if counts is None:
            return 0
        with self.admin.session() as (link, channel):
            getter = _Getter(link, channel)
            chosen: list[tuple[Basic.GetOk, pika.BasicProperties, bytes]] = []
            for _ in range(MAX_REDRIVE):
                got = getter.get(dead)
                if got is None:
                    break
                if wanted is None or _letter_id(got[1], got[2]) in wanted:
                    chosen.append(got)
            moved = self._requeue(queue, link, channel, chosen) if chosen else 0
        self.admin.await_ready(dead, counts[0] - moved)  # the others are back
        return moved

    def _requeue(
        self,
        queue: str,
        link: Link,
        channel: Channel,
        chosen: list[tuple[Basic.GetOk, pika.BasicProperties, bytes]],
    ) -> int:
        """Publish copies of dead letters to `queue` (confirmed), then ack the letters."""
        items = [Outgoing("", queue, body, _fresh(props)) for _, props, body in chosen]
        with self.admin.lock:
            results = self.admin.confirms().publish(items)
        moved = 0
        for (method, _, _), why in zip(chosen, results, strict=True):
            if why is None:
                channel.basic_ack(method.delivery_tag)
                moved += 1
            else:
                log.warning("dead letter not requeued to %r: %s", queue, why)
        link.flush(self.options.publish_timeout)
        return moved

    def purge_dead(self, queue: str) -> int:
        return self._purge(f"{queue}.dead")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for child in list(self._children):
            try:
                child.close()
            except Exception:
                log.debug("closing %r failed", child, exc_info=True)
        self.publisher.close()
        self.admin.close()


class _Getter:
    """basic.get on one channel: returns (GetOk, properties, body) or None when empty."""

    def __init__(self, link: Link, channel: Channel) -> None:
        self._link = link
        self._channel = channel
        self._box: list[Any] = []
        channel.add_callback(self._box.append, [Basic.GetEmpty], one_shot=False)

    def get(self, queue: str) -> tuple[Basic.GetOk, pika.BasicProperties, bytes] | None:
        box, channel = self._box, self._channel
        box.clear()
        channel.basic_get(queue, lambda _ch, m, p, b: box.append((m, p, b)))
        timeout = self._link.endpoint.options.connect_timeout
        if not self._link.drive(lambda: bool(box) or channel.is_closed, timeout):
            raise LinkError(f"basic.get on {queue!r} not answered within {timeout:.1f}s")
        if channel.is_closed:
            error = self._link.closed_reason(channel)
            if isinstance(error, ChannelError) and error.code == NOT_FOUND:
                return None  # no dead-letter queue: nothing was dead-lettered
            raise error or BrokerError(f"basic.get on {queue!r} failed")
        found = box[0]
        return found if isinstance(found, tuple) else None


def _letter_id(props: pika.BasicProperties, body: bytes) -> str:
    if props.message_id:
        return str(props.message_id)
    digest = hashlib.sha1(body + repr(sorted((props.headers or {}).items())).encode())
    return "sha1-" + digest.hexdigest()[:20]


def _fresh(props: pika.BasicProperties) -> pika.BasicProperties:
    """Properties of a re-driven message: the original's, bookkeeping dropped."""
    return pika.BasicProperties(
        delivery_mode=2,
        message_id=props.message_id,
        correlation_id=props.correlation_id,
        priority=props.priority,
        headers=user_headers(props.headers) or None,
    )
