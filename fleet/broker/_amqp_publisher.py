"""Publishing to RabbitMQ with publisher confirms, pipelined, over pooled connections.

Job: take a batch of messages durably (or say precisely why not), as fast as RabbitMQ
allows, from any number of caller threads; and send best-effort notifications.

Contract:
- `Publisher.publish(messages)` is the broker's `publish`: persistent messages
  (delivery_mode 2) to the default exchange, routing key = queue, or the queue's urgent
  lane for URGENT messages. An attempt gets a connection (connection refusals are
  retried with backoff and jitter for up to `publish_timeout` seconds), publishes the
  messages not yet confirmed, and waits for their confirms. A failed attempt (nack,
  return, timeout, lost connection) is followed by backoff with jitter and another, up
  to `publish_retries` attempts; then `PublishError` names the queues and the reason.
  An attempt that was nacked retries on a fresh connection (a channel whose quorum
  queue changed leader can go on nacking everything it publishes).
  While a host of the URL failed less than `publish_timeout` seconds ago
  (`Endpoint.failing_over`: a cluster node was lost, and the quorum queues it led nack
  publishes until they elect new leaders), failed attempts do not count, so a
  failover of up to `publish_timeout` seconds costs callers a delay, not an error
  (the grace ends `publish_timeout` seconds after the first attempt, whatever happens).
  Confirmed messages are never sent again, so a retry adds no duplicates of them. A
  RabbitMQ outage shorter than about `publish_retries` x `publish_timeout` seconds is
  thus invisible to callers (apart from the delay). `begin(messages)` returns once the
  first attempt's messages are on the socket, with a `Publishing` whose `wait()` does
  the rest (`publish` is `begin(...).wait()`) and whose `abandon()` collects the first
  attempt's confirms without retrying or raising.
- Connections are pooled: each caller thread checks one out for the whole call (pika
  connections are not thread-safe), so concurrent callers never wait on each other;
  at most `pool_size` idle ones are kept. A connection idle for more than half its
  heartbeat interval is replaced rather than trusted (nobody answered heartbeats on it).
- `notify` publishes transient messages, without confirms, not mandatory: a gone
  address drops them silently. It never raises, and never waits for RabbitMQ to come
  back (one connection attempt): a notification is worth less than the committer's time.
Publishing on one confirm-mode channel (`ConfirmChannel`) lives in
`fleet.broker._amqp_confirms`.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import pika

from fleet._value_class import value_class
from fleet.broker import URGENT, Message
from fleet.broker._amqp_confirms import NACKED, ConfirmChannel, Outgoing
from fleet.broker._amqp_link import Link, LinkError
from fleet.broker._amqp_local import deliver
from fleet.broker._amqp_params import Endpoint
from fleet.broker._amqp_queues import QueueInfo, urgent_lane
from fleet.errors import BrokerError, PublishError

log = logging.getLogger(__name__)


def properties(message: Message, message_id: str) -> pika.BasicProperties:
    """Persistent AMQP properties carrying the invocation id and the message's headers."""
    return pika.BasicProperties(
        delivery_mode=2,
        message_id=message_id,
        correlation_id=message.invocation_id,
        headers=dict(message.headers) if message.headers else None,
        priority=message.priority if 0 < message.priority < 256 else None,
    )


class Queues(Protocol):
    """What the publisher needs to know about queues (`fleet.broker._amqp_admin.Admin`)."""

    def ensure(
        self, names: Sequence[str], deadline: float | None = None
    ) -> Mapping[str, QueueInfo]: ...

    def forget(self, name: str) -> None: ...


class _Pooled:
    """A pooled connection: a confirm channel and a plain one for notifications."""

    def __init__(self, endpoint: Endpoint, name: str) -> None:
        self.link = Link(endpoint, name)
        try:
            self.confirms = ConfirmChannel(self.link)
            self.plain = self.link.channel()
        except BaseException:
            self.link.close(0.5)
            raise

    @property
    def alive(self) -> bool:
        return self.confirms.alive and self.plain.is_open


@value_class
class _Sent:
    """An attempt whose messages are on the wire, on a checked-out connection."""

    pooled: _Pooled


class Publishing:
    """A publish under way (`Publisher.begin`); belongs to the thread that began it."""

    def __init__(
        self,
        publisher: Publisher,
        messages: Sequence[Message],
        ids: Sequence[str],
        first: _Sent | dict[int, str],
    ) -> None:
        self._publisher = publisher
        self._messages = messages
        self._ids = ids
        self._first: _Sent | dict[int, str] | None = first

    def _take(self) -> _Sent | dict[int, str]:
        first, self._first = self._first, None
        if first is None:
            raise RuntimeError("this publish was already waited for or abandoned")
        return first

    def wait(self) -> None:
        """Return once every message is confirmed; else raise `PublishError`."""
        first = self._take()
        if self._messages:
            self._publisher._complete(self._messages, self._ids, first)

    def abandon(self) -> None:
        """Give up without retrying: settle the connection, report nothing."""
        first = self._take()
        if isinstance(first, _Sent):
            self._publisher._finish(first, self._messages)


class Publisher:
    """The broker's publishing side; thread-safe. See the module docstring."""

    def __init__(self, endpoint: Endpoint, queues: Queues) -> None:
        self.endpoint = endpoint
        self.options = endpoint.options
        self._queues = queues
        self._idle: list[_Pooled] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{os.urandom(4).hex()}-"
        self._closed = False

    def message_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    # -- connections --------------------------------------------------------------------

    def _checkout(self, deadline: float) -> _Pooled:
        heartbeat = self.endpoint.params.heartbeat or 0
        stale = heartbeat / 2 if heartbeat else float("inf")
        while True:
            with self._lock:
                if self._closed:
                    raise BrokerError(f"broker {self.endpoint.url} is closed")
                pooled = self._idle.pop() if self._idle else None
            if pooled is None:
                break
            if pooled.alive and time.monotonic() - pooled.link.last_used < stale:
                return pooled
            pooled.link.close(0.2)
        delay = 0.05
        while True:
            try:
                return _Pooled(self.endpoint, f"fleet publisher pid {os.getpid()}")
            except LinkError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                log.info("publisher: %s; retrying", exc)
                time.sleep(min(left, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, 2.0)

    def _checkin(self, pooled: _Pooled) -> None:
        if pooled.alive:
            with self._lock:
                if not self._closed and len(self._idle) < self.options.pool_size:
                    self._idle.append(pooled)
                    return
        pooled.link.close(0.5)

    # -- publishing ---------------------------------------------------------------------

    def publish(self, messages: Sequence[Message]) -> None:
        self.begin(messages).wait()

    def begin(self, messages: Sequence[Message]) -> Publishing:
        """Make the first attempt's messages leave now; `wait()` does the rest."""
        ids = [self.message_id() for _ in messages]
        return Publishing(self, messages, ids, self._send(messages, ids) if messages else {})

    def _send(self, messages: Sequence[Message], ids: Sequence[str]) -> _Sent | dict[int, str]:
        """The sending half of an attempt: the messages on the wire, or {position:
        reason} for all of them."""
        deadline = time.monotonic() + self.options.publish_timeout
        try:
            infos = self._queues.ensure(sorted({m.queue for m in messages}), deadline)
            pooled = self._checkout(deadline)
        except BrokerError as exc:
            return dict.fromkeys(range(len(messages)), str(exc))
        items = []
        for message, message_id in zip(messages, ids, strict=True):
            key = message.queue
            if message.priority >= URGENT and infos[key].urgent:
                key = urgent_lane(key)
            items.append(Outgoing("", key, bytes(message.body), properties(message, message_id)))
        try:
            pooled.confirms.send(items)
        except BrokerError as exc:
            pooled.link.close(0.2)
            return dict.fromkeys(range(len(messages)), str(exc))
        return _Sent(pooled)

    def _finish(self, sent: _Sent, messages: Sequence[Message]) -> dict[int, str]:
        """The waiting half of an attempt: {position: reason} of the messages that were
        not confirmed."""
        pooled = sent.pooled
        try:
            results = pooled.confirms.collect()
        except BrokerError as exc:
            pooled.link.close(0.2)
            return dict.fromkeys(range(len(messages)), str(exc))
        failed = {i: why for i, why in enumerate(results) if why is not None}
        if NACKED in failed.values():
            # A channel whose quorum queue changed leader may go on nacking every
            # publish (seen on a 3-node cluster): the next attempt gets a fresh one.
            pooled.link.close(0.2)
        else:
            self._checkin(pooled)
        for i, why in failed.items():
            if why.startswith("returned"):
                self._queues.forget(messages[i].queue)  # deleted meanwhile: declare again
        return failed

    def _attempt(self, messages: Sequence[Message], ids: Sequence[str]) -> dict[int, str]:
        """One attempt; {position: reason} of the messages that were not confirmed."""
        sent = self._send(messages, ids)
        return sent if isinstance(sent, dict) else self._finish(sent, messages)

    def _complete(
        self, messages: Sequence[Message], ids: Sequence[str], first: _Sent | dict[int, str]
    ) -> None:
        """Finish the first attempt, make the others, raise `PublishError` at the end."""
        todo = list(range(len(messages)))
        reasons: dict[int, str] = {}
        attempts = self.options.publish_retries
        attempt = made = 0
        grace_until = time.monotonic() + self.options.publish_timeout
        while attempt < attempts:
            attempt += 1
            made += 1
            if made == 1:
                failed = first if isinstance(first, dict) else self._finish(first, messages)
            else:
                failed = self._attempt([messages[i] for i in todo], [ids[i] for i in todo])
            reasons = {todo[position]: why for position, why in failed.items()}
            todo = sorted(reasons)
            if not todo:
                return
            if time.monotonic() < grace_until and self.endpoint.failing_over(
                self.options.publish_timeout
            ):
                attempt = min(attempt, attempts - 1)  # a leader election: not held against it
            if attempt < attempts:
                log.warning(
                    "publish attempt %d/%d: %d of %d message(s) not confirmed (%s); retrying",
                    made,
                    attempts,
                    len(todo),
                    len(messages),
                    next(iter(reasons.values())),
                )
                time.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
        queues = sorted({messages[i].queue for i in todo})
        why = sorted(set(reasons.values()))
        raise PublishError(
            f"publish to queue(s) {queues} on {self.endpoint.url}: {len(todo)} of "
            f"{len(messages)} message(s) not confirmed after {made} attempt(s): " + "; ".join(why)
        )

    def notify(self, notes: Sequence[tuple[str, bytes]]) -> None:
        """Best-effort transient messages to listener queues; never raises."""
        notes = deliver(notes)  # those to listeners on this host go directly
        if not notes:
            return
        transient = pika.BasicProperties(delivery_mode=1)
        for _ in range(2):
            try:
                pooled = self._checkout(time.monotonic())  # one connection attempt at most
            except BrokerError as exc:
                log.warning("notifications dropped: %s", exc)
                return
            try:
                for address, payload in notes:
                    pooled.plain.basic_publish("", address, bytes(payload), transient)
                pooled.link.flush(self.options.publish_timeout)
            except Exception as exc:
                log.info("notifications may be lost (%s); sending again", exc)
                pooled.link.close(0.2)
                continue
            self._checkin(pooled)
            return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.link.close(0.5)
