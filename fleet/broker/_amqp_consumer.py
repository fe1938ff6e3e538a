"""The worker side of the RabbitMQ broker: consuming with manual acks, and handing back.

Job: deliver messages from a worker's queues to its dispatcher, urgent ones first,
holding as little as possible for as short as possible, and survive RabbitMQ restarts.

Design, and why it loses nothing:
- One connection per consumer, driven by the dispatcher thread inside `receive` (so
  heartbeats are answered while it waits; `receive(0, t)` waits for `wakeup()` or the
  timeout and never spins). Each queue has two lanes, `q.urgent` and `q`, each with
  its own `basic.consume`. Deliveries wait in a local buffer until `receive` hands
  them out, urgent lanes first; when consuming (re)starts, the urgent lanes are counted
  and normal deliveries are held back (at most 0.5 s) until those urgent ones arrived.
- Prefetch: the contract bounds the messages buffered and not yet handed out. RabbitMQ
  counts every unacked delivery, so a lane consumes with prefetch = P + the deliveries
  of that lane its owner holds unacked, and is re-subscribed when those have used up
  its credit (a worker acks right after its claim, so its lanes stay at P). Quorum
  queues have no channel-wide prefetch: a consumer on k queues may buffer up to 2k x P
  (the urgent lanes are nearly always empty), and the hand-back bounds the wait.
- Ack discipline: the worker acks a message right after claiming its invocation in the
  state store, as the task starts (the ack leaves with those of the next deliveries,
  at the latest after `ACK_DELAY`, up to prefetch / 2 of them in one frame, so that
  they never hold much of the prefetch credit), so no message is unacked for the
  length of a task and RabbitMQ's consumer_timeout cannot trip. A message the
  worker has not asked for (prefetched while every slot is busy) waits at most
  `handoff_after` seconds (default 1): then every buffered message is handed back and
  consuming pauses until the worker asks again, so it never waits behind a long task
  while other workers idle. Handing back publishes a copy to the same lane with a
  confirm and then acks the original, so it does not count as a delivery (a nack
  would, and would push good messages towards the delivery limit); a copy that is
  refused (full queue) is nacked back instead. Nothing is acked before its copy is
  confirmed; a crash between the two leaves two copies, which is harmless: delivery is
  at least once anyway, and the worker's claim is a compare-and-set in the state
  store, so a copy of an invocation already claimed (or finished) is acked and dropped
  without running.
- Delivery counts and the delivery limit: see `fleet.broker._amqp_arrivals`, which
  sorts the deliveries as they arrive.
- Dead letters: `dead_letter` publishes a copy to `q.dlx` with `x-fleet-reason`,
  `x-fleet-queue` and `x-fleet-at` headers (RabbitMQ's own reject-dead-lettering cannot
  carry a reason), waits for the confirm, then acks the original. A queue declared
  with `dead_letter: false` has no exchange: the message is acked and dropped.
  (Settling lives in `fleet.broker._amqp_holding`.)
- `release` nacks quorum deliveries back (RabbitMQ counts the return) and copies
  classic ones with prior + 1. `close` sends the acks kept back, cancels, nacks
  everything held back to the queues, closes, and returns once RabbitMQ shows the
  consumer gone and the messages back (RabbitMQ settles both asynchronously; it waits
  at most 1 s).
- `notify` puts notifications on the consumer's connection as transient publishes
  (`FastConnection.publish_transient`); they leave with the next socket write (every
  `receive` writes what is pending first), so a worker's result notification shares a
  write with its acks.
- Deliveries are decoded straight from the socket data for the consumer tags of the
  lanes consuming (`fleet.broker._amqp_connection`); a lane is taken off before its
  cancel, so pika handles (rejects) what still comes for it.
- Connection loss: the buffer is dropped (RabbitMQ redelivers every unacked message),
  and `receive` reconnects with exponential backoff and jitter, returning [] meanwhile;
  acks and releases of deliveries from a lost connection are ignored (they come back,
  and the claim deduplicates). `ack` never raises: the dispatcher acks after its claims
  took effect, and an exception there would strand the claimed invocations.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from pika.channel import Channel

from fleet.broker import Consumer, Delivery
from fleet.broker._amqp_admin import NOT_FOUND
from fleet.broker._amqp_arrivals import URGENT_WAIT, Arrivals
from fleet.broker._amqp_holding import Lane
from fleet.broker._amqp_link import ChannelError, Link, LinkError
from fleet.broker._amqp_local import deliver
from fleet.broker._amqp_queues import urgent_lane
from fleet.errors import BrokerError

if TYPE_CHECKING:
    from fleet.broker.rabbitmq import RabbitMQBroker

log = logging.getLogger(__name__)


class RabbitMQConsumer(Arrivals, Consumer):
    """See the module docstring. Belongs to one thread, except `wakeup`."""

    def __init__(self, broker: RabbitMQBroker, queues: tuple[str, ...], prefetch: int) -> None:
        super().__init__(
            broker.admin.ensure(queues, time.monotonic() + broker.options.connect_timeout)
        )
        self._broker = broker
        self._endpoint = broker.endpoint
        self.queues = queues
        self.prefetch = max(prefetch, 1)
        self.ack_batch = max(1, self.prefetch // 2)  # acks kept back hold prefetch credit
        lanes = [Lane(urgent_lane(q), q, True) for q in queues if self._infos[q].urgent]
        self._lanes = lanes + [Lane(q, q, False) for q in queues]
        self._consuming = False
        self._wake = threading.Event()
        self._closed = False
        self._next_connect = 0.0
        self._backoff = 0.1
        try:
            self._connect()
        except BaseException:
            if self._link is not None:
                self._link.close(0.5)
            raise

    # -- the connection -----------------------------------------------------------------

    def _live(self) -> tuple[Link, Channel]:
        link, channel = self._link, self._channel
        if link is None or channel is None:
            raise LinkError(f"consumer of {list(self.queues)} is not connected")
        return link, channel

    def _connect(self) -> None:
        self._generation += 1
        name = f"fleet consumer pid {os.getpid()} {','.join(self.queues)}"[:200]
        self._link = Link(self._endpoint, name)
        self._channel = self._link.channel()
        self._channel.add_on_cancel_callback(self._on_cancelled)
        self._confirms = None
        self._subscribe()

    def _on_cancelled(self, _frame: object) -> None:
        if self._link is not None:  # the queue was deleted: declare it again, reconnect
            self._link.error = LinkError("RabbitMQ cancelled the consumer (queue deleted?)")
            for queue in self.queues:
                self._broker.admin.forget(queue)

    def _lost(self, exc: BaseException) -> None:
        """Forget a dead connection; RabbitMQ redelivers whatever it held."""
        if self._link is not None:
            log.warning(
                "consumer of %s: %s; reconnecting (its %d unacked deliveries come back)",
                list(self.queues),
                exc,
                len(self._held),
            )
            self._link.close(0.2)
        self._link = self._channel = self._confirms = None
        for buffer in (self._urgent, self._normal, self._incoming):
            buffer.clear()
        self._held.clear()
        self._out.clear()
        self._acks.clear()
        self._consuming = False
        self._next_connect = time.monotonic() + self._backoff * random.uniform(0.5, 1.5)

    def _reconnect(self) -> bool:
        if time.monotonic() < self._next_connect:
            return False
        try:
            self._infos = dict(self._broker.admin.ensure(self.queues))
            self._connect()
        except BrokerError as exc:
            self._backoff = min(self._backoff * 2, 5.0)
            self._lost(exc)
            return False
        log.info("consumer of %s: reconnected to %s", list(self.queues), self._endpoint.url)
        self._backoff = 0.1
        return True

    def _subscribe(self, lanes: Sequence[Lane] | None = None) -> None:
        """Start consuming on `lanes` (all: first count the urgent backlog)."""
        link, channel = self._live()
        if lanes is None:
            lanes = self._lanes
            self._expect_urgent = 0
            for lane in lanes:
                if lane.urgent:
                    frame = link.call(channel, "queue_declare", lane.name, passive=True)
                    self._expect_urgent += min(frame.method.message_count, self.prefetch)
            self._urgent_until = time.monotonic() + URGENT_WAIT
            self._consuming = True
        for lane in lanes:
            mine = sum(1 for t in self._out if self._held[t] is lane)
            lane.prefetch = self.prefetch + mine  # the owner's unacked ones count too
            link.call(channel, "basic_qos", prefetch_count=lane.prefetch)
            # Decoded without pika's dispatch (`_amqp_connection`) from the first
            # delivery on: those may come in the same read as the reply.
            tag = f"fleet.{uuid.uuid4().hex}"
            fast = link.connection.on_deliver.setdefault(channel.channel_number, {})
            fast[tag] = partial(self._arrived, lane)
            on_message = self._on_message_of(lane)
            link.call(channel, "basic_consume", lane.name, on_message, consumer_tag=tag)
            lane.consumer_tag = tag

    def _cancel(self, lanes: Sequence[Lane], timeout: float | None = None) -> None:
        link, channel = self._live()
        fast = link.connection.on_deliver.get(channel.channel_number, {})
        for lane in lanes:
            fast.pop(lane.consumer_tag, None)  # pika rejects what comes after the cancel
            link.call(channel, "basic_cancel", lane.consumer_tag, timeout=timeout)

    # -- receiving ----------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._link is not None and not self._closed

    def receive(self, max_messages: int, timeout: float | None) -> list[Delivery]:
        if self._closed:
            raise BrokerError(f"consumer of {list(self.queues)} is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            if self._wake.is_set():
                self._wake.clear()
                return []
            if self._link is None and not self._reconnect():
                now = time.monotonic()
                wait = self._next_connect - now
                if deadline is not None:
                    if deadline <= now:
                        return []
                    wait = min(wait, deadline - now)
                self._wake.wait(max(wait, 0.0))
                continue
            try:
                got = self._step(max_messages, deadline, first)
            except BrokerError as exc:  # connection lost, or a channel closed by RabbitMQ
                if isinstance(exc, ChannelError) and exc.code == NOT_FOUND:
                    for queue in self.queues:  # deleted: declared again on reconnection
                        self._broker.admin.forget(queue)
                self._lost(exc)
                continue
            first = False
            if got is not None:
                return got

    def _step(
        self, max_messages: int, deadline: float | None, first: bool
    ) -> list[Delivery] | None:
        """One round of `receive` on a live connection: deliveries, [] (time is up) or
        None (go on). The first round reads the socket even when the time is up."""
        link, _ = self._live()
        link.send()  # notifications and acks put on the connection since the last round
        self._sort()
        if max_messages > 0:
            if not self._consuming and not (self._urgent or self._normal):
                self._subscribe()
            if self._ready(max_messages):
                return self._take(max_messages)
            self._grow()
        now = time.monotonic()
        handoff = self._broker.options.handoff_after
        oldest = min((q[0][0] for q in (self._urgent, self._normal) if q), default=None)
        if oldest is not None and now - oldest >= handoff:
            self._hand_back()
            return None
        if self._acks and self._ack_due <= now:
            self._send_acks()
        if deadline is not None and deadline <= now and not first:
            return []
        waits = [max(0.0, deadline - now)] if deadline is not None else []
        if self._acks:
            waits.append(self._ack_due - now)
        if oldest is not None:
            waits.append(oldest + handoff - now)
        if max_messages > 0 and self._expect_urgent > 0 and self._normal:
            waits.append(self._urgent_until - now)  # > 0, or `_ready` would have said so
        wait = min(waits) if waits else None
        link.drive(lambda: bool(self._incoming) or self._ready(max_messages), wait, True)
        return None

    def _grow(self) -> None:
        """Re-subscribe lanes whose credit the owner's unacked deliveries used up."""
        if not self._consuming:
            return
        full = [
            lane
            for lane in self._lanes
            if sum(1 for t in self._out if self._held[t] is lane) >= lane.prefetch
        ]
        if full:
            self._cancel(full)
            self._subscribe(full)

    def _hand_back(self) -> None:
        """Give every buffered delivery back (copy, then ack) and stop consuming."""
        if self._consuming:
            self._cancel(self._lanes)
            self._consuming = False
            self._sort()
        waiting = [d for _, d in self._urgent] + [d for _, d in self._normal]
        self._urgent.clear()
        self._normal.clear()
        self._expect_urgent = 0
        log.debug("handing back %d prefetched message(s) nobody asked for", len(waiting))
        self._copy(waiting)

    # -- waking and closing -------------------------------------------------------------

    def notify(self, notes: Sequence[tuple[str, bytes]]) -> bool:
        channel = self._channel
        if self._link is None or channel is None or not channel.is_open:
            return False  # the publisher takes them all (delivering directly what it can)
        notes = deliver(notes)  # those to listeners on this host go directly
        if not notes:
            return True
        try:
            self._link.connection.publish_transient(channel, notes)
        except Exception:  # the publisher's connection takes them instead (a waiter
            # that hears of an outcome twice keeps it once)
            log.debug("notifications on the consumer's connection failed", exc_info=True)
            return False
        return True

    def wakeup(self) -> None:
        self._wake.set()
        link = self._link
        if link is not None:
            link.wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        link, channel = self._link, self._channel
        if link is None or channel is None:
            return
        expect: dict[str, tuple[int, int]] = {}
        try:
            # Counted before anything changes: afterwards each lane must show this
            # consumer gone and every delivery it held back.
            for lane in self._lanes if self._consuming else ():
                counts = self._broker.admin.counts(lane.name)
                held = sum(1 for held_lane in self._held.values() if held_lane is lane)
                if counts is not None:
                    expect[lane.name] = (counts[0] + held, counts[1])
            self._send_acks()  # before the nack below would take them back too
            if self._consuming:
                self._cancel(self._lanes, 2.0)  # no delivery after this...
            if self._held:
                channel.basic_nack(0, multiple=True, requeue=True)  # ...so all come back
        except BrokerError:
            log.debug("cancelling the consumers failed", exc_info=True)
            expect = {}
        finally:
            self._link = self._channel = None
            link.close()
        self._await(expect)

    def _await(self, expect: dict[str, tuple[int, int]]) -> None:
        """Wait (at most 1 s) until each lane has at least the ready count and fewer
        consumers than given."""
        deadline = time.monotonic() + 1.0
        try:
            while expect and time.monotonic() < deadline:
                left = {}
                for name, (ready, consumers) in expect.items():
                    counts = self._broker.admin.counts(name)
                    if counts is not None and (counts[0] < ready or counts[1] >= consumers):
                        left[name] = (ready, consumers)
                expect = left
                if expect:
                    time.sleep(0.002)
        except BrokerError:
            log.debug("could not check that the consumer is gone", exc_info=True)

    def __repr__(self) -> str:
        return f"RabbitMQConsumer({list(self.queues)!r})"
