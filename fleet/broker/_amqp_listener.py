"""Notification listeners of the RabbitMQ broker (see `fleet.broker.rabbitmq`).

Job: give one process an address that workers can push result notifications to, and
collect what arrives there without polling.

Contract:
- The address is the name of an exclusive, auto-delete, non-durable queue chosen by
  the client (`fleet.reply.<host>.<pid>.<random>`): RabbitMQ deletes it when the
  connection goes, and a notification to a gone address is dropped by the default
  exchange. The name is kept across reconnections, so invocations submitted before a
  RabbitMQ restart still reach this process afterwards.
- `receive(timeout)` drives the connection (answering heartbeats) until notifications
  arrive, the timeout passes or `wakeup()` is called; it consumes with auto-ack (the
  notifications are best effort; waiters fall back to the state store).
- A lost connection is reopened with exponential backoff and jitter inside `receive`,
  which returns [] meanwhile: notifications sent during the outage are lost, never
  the ability to receive later ones.
- Workers on the same host skip RabbitMQ (`fleet.broker._amqp_local`): the listener
  also binds the address's doorbell, watched by the same poll as the connection (and
  alone while the connection is down), so `receive` returns both kinds alike.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from pika.adapters.select_connection import PollEvents
from pika.channel import Channel

from fleet.broker import Listener
from fleet.broker._amqp_link import Link, LinkError
from fleet.broker._amqp_local import address, bell
from fleet.errors import BrokerError

if TYPE_CHECKING:
    from fleet.broker._amqp_params import Endpoint

log = logging.getLogger(__name__)


class RabbitMQListener(Listener):
    """See the module docstring. Belongs to one thread, except `wakeup`."""

    patient = True  # notifications wait in the listener's queue on RabbitMQ

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self.address = address()
        self._items: list[bytes] = []
        self._link: Link | None = None
        self._wake = threading.Event()
        self._closed = False
        self._backoff = 0.1
        self._next_connect = 0.0
        self._bell = bell(self.address)
        try:
            self._connect()
        except BaseException:
            if self._bell is not None:
                self._bell.close()
            raise

    def _connect(self) -> None:
        link = Link(self._endpoint, f"fleet listener pid {os.getpid()}")
        try:
            channel: Channel = link.channel()
            link.call(channel, "queue_declare", self.address, exclusive=True, auto_delete=True)
            link.call(channel, "basic_consume", self.address, self._on_message, auto_ack=True)
            if self._bell is not None:
                link.ioloop.add_handler(self._bell.fileno(), self._on_bell, PollEvents.READ)
        except BaseException:
            link.close(0.5)
            raise
        self._link = link

    def _on_message(self, _channel: Channel, _method: Any, _props: Any, body: bytes) -> None:
        self._items.append(body)

    def _on_bell(self, _fd: int, _events: int) -> None:
        if self._bell is not None:
            self._items.extend(self._bell.drain())

    def _reconnect(self) -> bool:
        if time.monotonic() < self._next_connect:
            return False
        try:
            self._connect()
        except BrokerError as exc:
            self._backoff = min(self._backoff * 2, 5.0)
            self._next_connect = time.monotonic() + self._backoff * random.uniform(0.5, 1.5)
            log.info("listener %s: %s; retrying", self.address, exc)
            return False
        log.info("listener %s: reconnected", self.address)
        self._backoff = 0.1
        return True

    def receive(self, timeout: float | None) -> list[bytes]:
        if self._closed:
            raise BrokerError(f"listener {self.address!r} is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True  # even receive(0) reads what has already arrived
        while True:
            if self._items:
                items, self._items = self._items, []
                return items
            if self._wake.is_set():
                self._wake.clear()
                return []
            now = time.monotonic()
            if deadline is not None and now >= deadline and not first:
                return []
            first = False
            left = None if deadline is None else max(0.0, deadline - now)
            link = self._link
            if link is None:
                if not self._reconnect():
                    wait = max(0.0, self._next_connect - now)
                    wait = wait if left is None else min(wait, left)
                    if self._bell is None:
                        self._wake.wait(wait)
                    else:  # same-host notifications still arrive
                        self._items.extend(self._bell.wait(wait))
                continue
            try:
                link.drive(lambda: bool(self._items), left, interruptible=True)
            except LinkError as exc:
                log.warning("listener %s: %s; reconnecting", self.address, exc)
                link.close(0.2)
                self._link = None
                self._next_connect = time.monotonic() + self._backoff * random.uniform(0.5, 1.5)

    def wakeup(self) -> None:
        self._wake.set()
        if self._bell is not None:
            self._bell.wakeup()
        link = self._link
        if link is not None:
            link.wake()

    def close(self) -> None:
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            link.close()
        if self._bell is not None:
            self._bell.close()
