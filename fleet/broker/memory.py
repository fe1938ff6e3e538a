"""The in-memory broker: one process, no I/O, for tests and inline mode.

Job: implement the `Broker` contract with Python objects and `threading.Condition`s,
behaving like the SQLite broker (same options, same dead-letter reasons, same order).

Contract, beyond `fleet.broker`:
- `memory://name` brokers in one process share their queues (a module registry keyed by
  name; `drop(name)` forgets one); `memory://` is a private, fresh broker.
- Options: `visibility_timeout` (seconds a delivery stays invisible before it is
  delivered again, default 30) and `poll_interval` (longest an idle `receive` sleeps
  between checks for expired deliveries, default 1). Unknown options raise ConfigError.
- Order: higher priority first (URGENT before normal), then publish order.
- `receive(0, timeout)` takes nothing and waits for `wakeup()` or the timeout.
- A consumer acks, releases or dead-letters only messages it still holds; a stale
  delivery (redelivered to someone else since) is ignored.
- Listener addresses look like `memory:<broker>/l<n>`; `notify` only reaches listeners of
  brokers sharing the same registry entry, and silently drops unknown addresses.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence

from fleet._sqlite import float_options
from fleet.broker import (
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    Listener,
    Message,
    QueueStats,
    _common,
)
from fleet.broker._memory_hub import Entry, Hub, Mailbox, Queue
from fleet.errors import BrokerError, ConfigError
from fleet.queues import QueueSpec

log = logging.getLogger(__name__)

_registry: dict[str, Hub] = {}
_registry_lock = threading.Lock()
_private = itertools.count(1)


def drop(name: str) -> None:
    """Forget the shared data of `memory://name` (brokers still open keep theirs)."""
    with _registry_lock:
        _registry.pop(name, None)


class MemoryBroker(Broker):
    """See the module docstring."""

    def __init__(self, url: str = "memory://", **options: object) -> None:
        opts = float_options(
            "MemoryBroker",
            options,
            {
                "visibility_timeout": _common.DEFAULT_VISIBILITY_TIMEOUT,
                "poll_interval": _common.DEFAULT_POLL_INTERVAL,
            },
        )
        scheme, sep, name = url.partition("://")
        if scheme.lower() != "memory" or not sep or "/" in name:
            raise ConfigError(f"broker_url {url!r}: expected memory:// or memory://name")
        self.url = url
        self.visibility_timeout = opts["visibility_timeout"]
        self.poll_interval = opts["poll_interval"]
        if name:
            with _registry_lock:
                hub = _registry.get(name)
                if hub is None:
                    hub = _registry[name] = Hub(name)
        else:
            hub = Hub(f"private-{next(_private)}")
        self._hub = hub
        self._closed = False

    def declare(self, queues: Sequence[QueueSpec]) -> None:
        with self._hub.cond:
            for spec in queues:
                if not isinstance(spec, QueueSpec):
                    raise BrokerError(f"declare takes QueueSpec objects, got {spec!r}")
                self._hub.specs[spec.name] = spec
                self._hub.queue(spec.name)

    def publish(self, messages: Sequence[Message]) -> None:
        _common.check_messages(messages)
        if not messages:
            return
        hub = self._hub
        with hub.cond:
            now = time.time()
            limited = {m.queue for m in messages if hub.spec(m.queue).max_length}
            for name in limited:
                hub.queue(name).expire(now)
            ready = {name: len(hub.queue(name).ready()) for name in limited}
            plan = _common.plan_overflow(messages, ready, hub.spec)
            if plan.refused:
                for message, reason in plan.refused_dead:
                    hub.bury(message, reason, now)
                raise plan.error(hub.spec)
            for name, n in plan.drop_head.items():
                q = hub.queue(name)
                limit = hub.spec(name).max_length
                for entry in sorted(q.ready(), key=lambda e: e.id)[:n]:
                    q.forget(entry)
                    hub.bury(entry.message, f"max length {limit} exceeded (dropped from head)", now)
            for message, reason in plan.dead:
                hub.bury(message, reason, now)
            for message in plan.accept:
                hub.enqueue(message, now)
            hub.cond.notify_all()

    def consumer(self, queues: Sequence[str], prefetch: int) -> MemoryConsumer:
        _common.check_prefetch(prefetch)
        return MemoryConsumer(self, _common.check_queues(queues))

    def listener(self) -> MemoryListener:
        return MemoryListener(self._hub)

    def notify(self, notes: Sequence[tuple[str, bytes]]) -> None:
        for address, payload in notes:
            box = self._hub.mailboxes.get(address)
            if box is None:
                log.debug("notification to gone address %r dropped", address)
                continue
            with box.cond:
                box.items.append(bytes(payload))
                box.cond.notify_all()

    def purge(self, queue: str) -> int:
        with self._hub.cond:
            q = self._hub.queue(queue)
            q.expire(time.time())
            ready = q.ready()
            for entry in ready:
                q.forget(entry)
            q.heap = [item for item in q.heap if not item[2].gone]
            heapq.heapify(q.heap)
            return len(ready)

    def stats(self, queue: str) -> QueueStats:
        with self._hub.cond:
            q = self._hub.queue(queue)
            now = time.time()
            q.expire(now)
            return QueueStats(queue, len(q.ready()), len(q.held), len(q.consumers), len(q.dead))

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        with self._hub.cond:
            letters = self._hub.queue(queue).dead.values()
            return [letter for letter, _ in itertools.islice(letters, max(limit, 0))]

    def redrive(self, queue: str, ids: Sequence[str] | None = None) -> int:
        hub = self._hub
        with hub.cond:
            q = hub.queue(queue)
            keys = list(q.dead) if ids is None else [int(i) for i in ids if str(i).isdigit()]
            now = time.time()
            moved = 0
            for key in sorted(keys):
                item = q.dead.pop(key, None)
                if item is not None:
                    hub.enqueue(item[1], now)
                    moved += 1
            hub.cond.notify_all()
            return moved

    def purge_dead(self, queue: str) -> int:
        with self._hub.cond:
            q = self._hub.queue(queue)
            n = len(q.dead)
            q.dead.clear()
            return n

    def close(self) -> None:
        self._closed = True


class MemoryConsumer(Consumer):
    """Receives from queues of a `MemoryBroker`; belongs to one thread."""

    def __init__(self, broker: MemoryBroker, queues: tuple[str, ...]) -> None:
        self._broker = broker
        self._hub = broker._hub
        self.queues = queues
        self.id = f"c{next(_private)}"
        self._woken = False
        self._closed = False
        with self._hub.cond:
            for name in queues:
                self._hub.queue(name).consumers.add(self.id)

    def receive(self, max_messages: int, timeout: float | None) -> list[Delivery]:
        if self._closed:
            raise BrokerError(f"consumer {self.id} of {self.queues} is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._hub.cond
        with cond:
            while max_messages <= 0:  # take nothing; wait for wakeup or the deadline only
                remaining = None if deadline is None else deadline - time.monotonic()
                if self._woken or (remaining is not None and remaining <= 0):
                    self._woken = False
                    return []
                cond.wait(remaining)
            while True:
                got = self._claim(max_messages)
                if got or self._woken:
                    self._woken = False
                    return got
                wait = self._broker.poll_interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    wait = min(wait, remaining)
                cond.wait(wait)

    def _claim(self, n: int) -> list[Delivery]:
        hub = self._hub
        now = time.time()
        queues = [hub.queue(name) for name in self.queues]
        for q in queues:
            q.expire(now)
        out: list[Delivery] = []
        while len(out) < n:
            heads = [(head, q) for q in queues if (head := q.head()) is not None]
            if not heads:
                break
            (_, _, entry), q = min(heads, key=lambda item: item[0][:2])
            heapq.heappop(q.heap)
            entry.in_heap = False
            entry.count += 1
            spec = hub.spec(entry.message.queue)
            reason = ""
            if spec.delivery_limit is not None and entry.count > spec.delivery_limit:
                reason = _common.delivery_limit_reason(spec.delivery_limit)
            elif spec.message_ttl is not None and now - entry.created > spec.message_ttl:
                reason = _common.EXPIRED
            if reason:
                q.forget(entry)
                hub.bury(entry.message, reason, now)
                continue
            entry.holder = self.id
            entry.visible_at = now + self._broker.visibility_timeout
            q.held[entry.id] = entry
            out.append(Delivery(entry.message, entry.id, entry.count))
        return out

    def _mine(self, delivery: Delivery) -> tuple[Queue, Entry] | None:
        q = self._hub.queues.get(delivery.message.queue)
        entry = (
            q.held.get(delivery.tag) if q is not None and isinstance(delivery.tag, int) else None
        )
        if q is None or entry is None or entry.holder != self.id:
            log.debug("consumer %s: delivery %r is no longer held", self.id, delivery.tag)
            return None
        return q, entry

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        with self._hub.cond:
            for delivery in deliveries:
                if (found := self._mine(delivery)) is not None:
                    found[0].forget(found[1])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._hub.cond:
            if (found := self._mine(delivery)) is not None:
                found[0].forget(found[1])
                self._hub.bury(found[1].message, reason, time.time())

    def release(self, deliveries: Sequence[Delivery]) -> None:
        with self._hub.cond:
            for delivery in deliveries:
                if (found := self._mine(delivery)) is not None:
                    found[0].give_back(found[1])
            self._hub.cond.notify_all()

    def wakeup(self) -> None:
        self._woken = True
        with self._hub.cond:
            self._hub.cond.notify_all()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._hub.cond:
            for name in self.queues:
                q = self._hub.queue(name)
                q.consumers.discard(self.id)
                for entry in [e for e in q.held.values() if e.holder == self.id]:
                    q.give_back(entry)
            self._hub.cond.notify_all()


class MemoryListener(Listener):
    """A mailbox for notifications, in this process."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._box = Mailbox()
        self.address = f"memory:{hub.name}/l{next(_private)}"
        hub.mailboxes[self.address] = self._box

    def receive(self, timeout: float | None) -> list[bytes]:
        box = self._box
        deadline = None if timeout is None else time.monotonic() + timeout
        with box.cond:
            while not box.items and not box.woken:
                if deadline is None:
                    box.cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                box.cond.wait(remaining)
            box.woken = False
            items = list(box.items)
            box.items.clear()
            return items

    def wakeup(self) -> None:
        with self._box.cond:
            self._box.woken = True
            self._box.cond.notify_all()

    def close(self) -> None:
        self._hub.mailboxes.pop(self.address, None)
