"""The broker interface: how invocations travel from producers to workers.

Job: move opaque message bodies between processes, durably, and carry small push
notifications (results) back to whoever waits.

Contract, for every implementation:
- `publish` returns only once the broker has taken every message durably (a publisher
  confirm, a committed transaction). Otherwise it raises `PublishError`; a message is
  never reported as sent when it was not. `begin_publish` splits it in two, so that the
  caller can work while the broker confirms: by default nothing is sent before `wait()`
  (which is `publish`), while the RabbitMQ broker sends at once, so its messages may
  reach a consumer before `wait()` returns, and even when the publish is abandoned.
- A `Consumer` delivers each message to one consumer at a time. A delivery that is
  neither acked nor dead-lettered (the consumer died, closed, or released it) is
  delivered again, and its `delivery_count` grows; past the queue's delivery limit it is
  dead-lettered instead. Delivery is at least once: callers deduplicate.
- `Consumer.dead_letter` moves the message to the queue's dead-letter queue with the
  reason attached; `dead_letters`, `redrive` and `purge_dead` inspect and manage them.
- `Consumer.receive(max_messages=0, timeout)` takes nothing: it waits for the timeout or
  a `wakeup` (never returning at once, so a busy worker does not spin) while keeping the
  connection alive. A consumer
  never holds more than its prefetch, and hands prefetched messages back to the queue
  when its owner has not asked for them for a while (so they never wait behind a long
  task while other workers idle).
- Notifications (`notify`, `Listener`) are best effort and not durable: waiters must be
  able to fall back to the state store.
- `Broker` methods are thread-safe. A `Consumer` or `Listener` belongs to one thread,
  except `wakeup`, which any thread may call.

Backends are chosen by the scheme of `broker_url` through the explicit table `BACKENDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Protocol

from fleet._value_class import value_class
from fleet.errors import ConfigError

if TYPE_CHECKING:
    from fleet.config import Settings
    from fleet.queues import QueueSpec

URGENT = 1
"""Priority of a message someone is already waiting for (served before normal work)."""


@value_class
class Message:
    """One invocation on its way to a worker."""

    queue: str
    body: bytes
    invocation_id: str
    priority: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)


@value_class
class Delivery:
    """A message as a consumer received it; hand it back to ack or dead-letter."""

    message: Message
    tag: object
    """Backend-specific handle (delivery tag, row id)."""
    delivery_count: int = 1
    """How many times this message has been delivered, this time included."""


@value_class
class DeadLetter:
    """A message that was set aside, and why."""

    queue: str
    body: bytes
    reason: str
    id: str
    """Handle for `redrive` (broker-specific, stable while the letter exists)."""
    at: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


@value_class
class QueueStats:
    name: str
    ready: int
    """Messages waiting to be delivered."""
    unacked: int
    """Messages delivered and not yet acked (-1 where the backend cannot tell)."""
    consumers: int
    dead: int
    """Messages in the queue's dead-letter queue."""
    declared: bool = True
    """False where the broker knows the queue does not exist (RabbitMQ, before declare)."""


class Consumer(ABC):
    """Receives messages from some queues on behalf of one worker process."""

    @abstractmethod
    def receive(self, max_messages: int, timeout: float | None) -> list[Delivery]:
        """Wait up to `timeout` seconds for at most `max_messages` deliveries.

        Returns early, possibly with none, when `wakeup` is called. Urgent messages come
        before normal ones.
        """

    @abstractmethod
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove delivered messages for good."""

    @abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivered message to its queue's dead-letter queue, with the reason."""

    @abstractmethod
    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give delivered messages back to the queue, unprocessed."""

    @abstractmethod
    def wakeup(self) -> None:
        """Make a blocked `receive` return now. Safe from any thread."""

    @abstractmethod
    def close(self) -> None:
        """Stop consuming; unacked deliveries go back to the queue."""

    @property
    def attached(self) -> bool:
        """Whether the consumer is connected and consuming now (False while it reconnects
        after losing the broker); readiness probes report it. Any thread may read it."""
        return True

    def notify(self, notes: Sequence[tuple[str, bytes]]) -> bool:
        """Send notifications (as `Broker.notify`) over this consumer's own connection,
        with whatever it sends next; False when it cannot (the caller then uses the
        broker). Only from the thread that drives the consumer."""
        return False


class Listener(ABC):
    """Receives push notifications sent to its address."""

    address: str
    patient: bool = False
    """True when notifications wait for `receive` without loss however long it takes
    (they queue in the broker); False where unread ones may be dropped (the embedded
    broker's doorbells hold only a few datagrams)."""

    @abstractmethod
    def receive(self, timeout: float | None) -> list[bytes]:
        """Wait up to `timeout` seconds for notifications; [] on timeout or wakeup."""

    @abstractmethod
    def wakeup(self) -> None:
        """Make a blocked `receive` return now. Safe from any thread."""

    @abstractmethod
    def close(self) -> None: ...


class Publishing(Protocol):
    """A publish under way (`Broker.begin_publish`); used by the thread that began it."""

    def wait(self) -> None:
        """Return once every message was taken durably; else raise `PublishError`."""

    def abandon(self) -> None:
        """Give the publish up (what was already sent may still arrive); never raises
        `PublishError`."""


class _Deferred:
    """`begin_publish` of a broker that sends nothing before `wait()`."""

    def __init__(self, broker: Broker, messages: Sequence[Message]) -> None:
        self._broker = broker
        self._messages = messages

    def wait(self) -> None:
        self._broker.publish(self._messages)

    def abandon(self) -> None:
        pass


class Broker(ABC):
    """A message broker behind fleet. See the module docstring for the contract."""

    url: str
    """The URL it was opened with, credentials removed (safe to log)."""
    sends_early: bool = False
    """Whether `begin_publish` sends at once (messages may arrive before `wait()`)."""

    @abstractmethod
    def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Create queues (and their dead-letter queues) if missing; idempotent."""

    @abstractmethod
    def publish(self, messages: Sequence[Message]) -> None:
        """Send messages durably; raise `PublishError` unless all were taken."""

    def begin_publish(self, messages: Sequence[Message]) -> Publishing:
        """Start a `publish` that `wait()` finishes (see the module docstring)."""
        return _Deferred(self, messages)

    @abstractmethod
    def consumer(self, queues: Sequence[str], prefetch: int) -> Consumer:
        """Start consuming from `queues`, holding at most `prefetch` undelivered."""

    @abstractmethod
    def listener(self) -> Listener:
        """Open a notification address for this process."""

    @abstractmethod
    def notify(self, notes: Sequence[tuple[str, bytes]]) -> None:
        """Send (address, payload) notifications; best effort, never raises for a gone
        address."""

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Drop every ready message of `queue`; return how many."""

    @abstractmethod
    def stats(self, queue: str) -> QueueStats: ...

    @abstractmethod
    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters of `queue`, without removing them."""

    @abstractmethod
    def redrive(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Move dead letters (all, or those with `ids`) back to `queue`."""

    @abstractmethod
    def purge_dead(self, queue: str) -> int:
        """Drop the dead letters of `queue`; return how many."""

    @abstractmethod
    def close(self) -> None: ...


BACKENDS: dict[str, str] = {
    "memory": "fleet.broker.memory:MemoryBroker",
    "sqlite": "fleet.broker.sqlite:SQLiteBroker",
    "amqp": "fleet.broker.rabbitmq:RabbitMQBroker",
    "amqps": "fleet.broker.rabbitmq:RabbitMQBroker",
}


def open_broker(url: str, *, settings: Settings | None = None, **options: object) -> Broker:
    """Open the broker named by `url`'s scheme (see `BACKENDS`).

    With `settings`, a backend also gets the settings named by its class attribute
    `SETTINGS` (e.g. `publish_timeout`) as options; explicit options win.
    """
    from fleet._urls import load_backend

    cls = load_backend(BACKENDS, url, "broker_url")
    if settings is not None:
        for name in getattr(cls, "SETTINGS", ()):
            options.setdefault(name, getattr(settings, name))
    broker = cls(url, **options)
    if not isinstance(broker, Broker):  # pragma: no cover - table misconfigured
        raise ConfigError(f"broker_url {url!r} maps to {cls!r}, which is not a Broker")
    return broker


__all__ = [
    "BACKENDS",
    "URGENT",
    "Broker",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Listener",
    "Message",
    "Publishing",
    "QueueStats",
    "open_broker",
]
