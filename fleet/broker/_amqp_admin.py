"""Queue management on RabbitMQ over one shared, lock-guarded connection.

Job: declare the queues a `QueueSpec` implies, learn what exists (for publishers and
consumers of queues this process never declared), count messages, purge, and give the
dead-letter operations a session to work in.

Contract:
- Thread-safe: one connection, used under a lock, opened on first use and again after
  it was lost or sat idle past half its heartbeat interval; an RPC that finds it lost
  is tried once more on a new one, and `declare` and `ensure` retry connection
  failures with backoff and jitter (for `connect_timeout`, or up to a deadline).
- `declare(specs)` creates what each spec implies (see `fleet.broker._amqp_queues`);
  when a queue exists with other arguments it raises `QueueMismatchError` listing every
  difference. The specs are remembered (dead-letter reasons quote their limits).
- `ensure(names)` returns a `QueueInfo` per name, cached: an existing queue is taken as
  it is (passive declares of the queue, its urgent lane and its dead-letter exchange);
  a missing one is declared with the default `QueueSpec`. `forget(name)` drops the cache
  entry (a publish came back unroutable: the queue was deleted).
- `counts(name)` is (ready, consumers) of a queue, or None when it does not exist; it
  never creates anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pika.channel import Channel

from fleet.broker._amqp_confirms import ConfirmChannel
from fleet.broker._amqp_link import ChannelError, Link, LinkError
from fleet.broker._amqp_params import Endpoint
from fleet.broker._amqp_queues import (
    Difference,
    QueueInfo,
    arguments,
    mismatch_error,
    parse_inequivalent,
    urgent_lane,
)
from fleet.errors import BrokerError
from fleet.queues import QueueSpec

log = logging.getLogger(__name__)
NOT_FOUND, PRECONDITION_FAILED = 404, 406
_PROBES = 12


class Admin:
    """Declarations and inspection; see the module docstring."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.lock = threading.RLock()
        self._link: Link | None = None
        self._channel: Channel | None = None
        self._confirms: ConfirmChannel | None = None
        self._infos: dict[str, QueueInfo] = {}
        self._specs: dict[str, QueueSpec] = {}

    # -- the connection -----------------------------------------------------------------

    @property
    def link(self) -> Link:
        """The connection, (re)opened when missing, lost, or idle for more than half its
        heartbeat interval (nobody answered heartbeats on it: do not trust it)."""
        link = self._link
        heartbeat = self.endpoint.params.heartbeat or 0
        stale = link is not None and heartbeat and time.monotonic() - link.last_used > heartbeat / 2
        if link is None or not link.alive or stale:
            if link is not None:
                link.close(0.2)
            self._link = self._channel = self._confirms = None
            self._link = link = Link(self.endpoint, f"fleet admin pid {os.getpid()}")
        return link

    def wait_for(self, seconds: float) -> None:
        """Open the connection, retrying with backoff and jitter for up to `seconds`
        while RabbitMQ cannot be reached; then raise the last `LinkError`."""
        deadline = time.monotonic() + seconds
        delay = 0.05
        while True:
            try:
                with self.lock:
                    self.link  # noqa: B018 - opens it
                return
            except LinkError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkError(f"{exc} (waited {seconds:g}s: connect_retry)") from exc
                log.info("waiting for RabbitMQ: %s; retrying", exc)
                time.sleep(min(left, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, 2.0)

    def channel(self) -> Channel:
        """The admin channel (reopened after the broker closed it)."""
        link = self.link
        if self._channel is None or not self._channel.is_open:
            self._channel = link.channel()
        return self._channel

    def confirms(self) -> ConfirmChannel:
        link = self.link
        if self._confirms is None or not self._confirms.alive:
            self._confirms = ConfirmChannel(link)
        return self._confirms

    def rpc(self, method: str, *args: Any, **kw: Any) -> Any:
        """Run one RPC on the admin channel, under the lock (see `Link.call`); on a lost
        connection, once more on a new one."""
        with self.lock:
            try:
                return self.link.call(self.channel(), method, *args, **kw)
            except LinkError:
                if self._link is not None:
                    self._link.close(0.2)
                return self.link.call(self.channel(), method, *args, **kw)

    @contextlib.contextmanager
    def session(self) -> Iterator[tuple[Link, Channel]]:
        """The link and a fresh channel, under the lock; the channel is closed after
        (so whatever it still holds unacked goes back to its queue)."""
        with self.lock:
            link = self.link
            channel = link.channel()
            try:
                yield link, channel
            finally:
                if channel.is_open:
                    channel.close()
                    with contextlib.suppress(LinkError):
                        link.drive(lambda: channel.is_closed, 2.0)

    def close(self) -> None:
        with self.lock:
            if self._link is not None:
                self._link.close()
            self._link = self._channel = self._confirms = None

    # -- existence and counts -----------------------------------------------------------

    def counts(self, name: str) -> tuple[int, int] | None:
        try:
            frame = self.rpc("queue_declare", name, passive=True)
        except ChannelError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise
        return frame.method.message_count, frame.method.consumer_count

    def await_ready(self, name: str, at_least: int, timeout: float = 1.0) -> None:
        """Wait until queue `name` has `at_least` ready messages (at most `timeout` s):
        RabbitMQ puts messages a closed channel held back asynchronously."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.counts(name)
            if counts is None or counts[0] >= at_least:
                return
            time.sleep(0.002)

    def exchange_exists(self, name: str) -> bool:
        try:
            self.rpc("exchange_declare", name, passive=True)
        except ChannelError as exc:
            if exc.code == NOT_FOUND:
                return False
            raise
        return True

    def spec(self, name: str) -> QueueSpec | None:
        return self._specs.get(name)

    def ensure(self, names: Sequence[str], deadline: float | None = None) -> dict[str, QueueInfo]:
        """`QueueInfo` for each name (see the module docstring); connection failures are
        retried with backoff until `deadline` (a `time.monotonic()` value)."""
        infos = self._infos
        if all(n in infos for n in names):
            return {n: infos[n] for n in names}
        delay = 0.05
        while True:
            try:
                with self.lock:
                    for name in names:
                        if name not in infos:
                            infos[name] = self._learn(name)
                return {n: infos[n] for n in names}
            except LinkError:
                if deadline is None or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _learn(self, name: str) -> QueueInfo:
        if self.counts(name) is None:
            self.declare([self._specs.get(name) or QueueSpec(name)])
            return self._infos[name]
        return QueueInfo(
            name,
            urgent=self.counts(urgent_lane(name)) is not None,
            dead_letter=self.exchange_exists(f"{name}.dlx"),
            spec=self._specs.get(name),
        )

    def forget(self, name: str) -> None:
        with self.lock:
            self._infos.pop(name, None)

    # -- declaring ----------------------------------------------------------------------

    def declare(self, specs: Sequence[QueueSpec]) -> None:
        for spec in specs:
            if not isinstance(spec, QueueSpec):
                raise BrokerError(f"declare takes QueueSpec objects, got {spec!r}")
        deadline = time.monotonic() + self.endpoint.options.connect_timeout
        delay = 0.05
        for spec in specs:
            while True:
                try:
                    with self.lock:
                        self._declare(spec)
                        self._specs[spec.name] = spec
                        self._infos[spec.name] = QueueInfo(spec.name, True, spec.dead_letter, spec)
                    break
                except LinkError:
                    if time.monotonic() + delay > deadline:
                        raise
                    time.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 2.0)

    def _declare(self, spec: QueueSpec) -> None:
        if spec.dead_letter:
            dlx, dead = spec.dead_letter_exchange, spec.dead_letter_queue
            self.rpc("exchange_declare", dlx, "fanout", durable=True)
            self._queue(dead, {"x-queue-type": spec.type})
            self.rpc("queue_bind", dead, dlx)
        args = arguments(spec)
        self._queue(spec.name, args, spec)
        self._queue(urgent_lane(spec.name), args, spec)

    def _queue(self, name: str, args: dict[str, Any], spec: QueueSpec | None = None) -> None:
        try:
            self.rpc("queue_declare", name, durable=True, arguments=args)
        except ChannelError as exc:
            first = parse_inequivalent(exc.text) if exc.code == PRECONDITION_FAILED else None
            if first is None:
                raise
            raise mismatch_error(name, self._probe(name, args, first), spec) from None

    def _probe(self, name: str, args: dict[str, Any], first: Difference) -> list[Difference]:
        """Every argument that differs: declare again with the broker's value of each
        difference found so far, until the declaration passes (it then changes nothing)."""
        found = [first]
        probe = dict(args)
        for _ in range(_PROBES):
            diff = found[-1]
            if not diff.arg.startswith("x-"):
                break  # durable/exclusive/auto_delete: not an argument we can probe
            if diff.theirs is None:
                probe.pop(diff.arg, None)
            else:
                probe[diff.arg] = diff.theirs
            try:
                self.rpc("queue_declare", name, durable=True, arguments=probe)
                break
            except ChannelError as exc:
                more = parse_inequivalent(exc.text) if exc.code == PRECONDITION_FAILED else None
                if more is None or any(d.arg == more.arg for d in found):
                    break
                found.append(more)
        return found
