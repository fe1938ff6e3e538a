"""Result notifications to a listener on the same host, past RabbitMQ.

Job: a worker that finishes an invocation whose caller listens on the same host hands
the notification to the caller's process directly, as a Unix datagram
(`fleet._doorbell`), instead of publishing it to the caller's listener queue for
RabbitMQ to route and deliver. That is one system call and one wake-up instead of a
publish, a route, a delivery and two wake-ups, and it takes the notification's work off
RabbitMQ, the worker and the caller (the three share the CPUs of one host in the
single-host deployments where this applies).

Contract:
- Listener addresses are `fleet.reply.<host>.<pid>.<tag>` (`address()`): the name of
  the listener's exclusive queue. Where Linux's abstract socket namespace exists, a
  `RabbitMQListener` also binds the doorbell `bell(address)`, named after `<pid>.<tag>`,
  and receives from both.
- `deliver(notes)` sends each notification it can that way and returns the others, in
  order, for RabbitMQ: those to another host's listener or to an address that is not a
  well-formed listener address (it comes from a message: untrusted), to a doorbell that
  is gone (a caller in another network namespace with the same host name, an async
  caller, a listener that closed) or full (a burst beyond the kernel's datagram queue),
  and payloads over `fleet._doorbell.MAX_PAYLOAD`. It never raises for a receiver.
- Nothing changes for whoever waits: notifications stay best effort either way, and
  waiters fall back to the state store, as the broker contract says.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Sequence

from fleet import _doorbell

log = logging.getLogger(__name__)

_NAMESPACE = "rabbitmq-listeners"
"""What the doorbells' addresses hash: any process of the host may ring any listener."""
_TAIL = re.compile(r"(\d{1,10})\.([0-9a-f]{8})")


def _host() -> str:
    name = socket.gethostname()
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60]


_PREFIX = f"fleet.reply.{_host()}."
"""Listener addresses of this host start with this (a fork keeps the host name)."""
ENABLED = _doorbell.abstract_supported()
"""Only abstract addresses: they need no shared folder and vanish with their socket."""


def address() -> str:
    """A new listener address of this process."""
    return f"{_PREFIX}{os.getpid()}.{os.urandom(4).hex()}"


def bell_name(address: str) -> str | None:
    """The doorbell name of a listener address of this host, else None."""
    if not ENABLED or not address.startswith(_PREFIX):
        return None
    tail = address[len(_PREFIX) :]
    return f"l{tail}" if _TAIL.fullmatch(tail) else None


def bell(address: str) -> _doorbell.Doorbell | None:
    """The doorbell a listener at `address` receives on, or None where there is none
    (another platform, or it cannot be bound: the listener then takes everything from
    RabbitMQ)."""
    name = bell_name(address)
    if name is None:
        return None
    try:
        return _doorbell.Doorbell(_NAMESPACE, name, abstract=True)
    except (OSError, ValueError) as exc:
        log.info("listener %s receives through RabbitMQ only: %s", address, exc)
        return None


_RINGS = _doorbell.address_of(_NAMESPACE, "")
"""What every listener's doorbell address starts with; its name follows."""


def deliver(notes: Sequence[tuple[str, bytes]]) -> Sequence[tuple[str, bytes]]:
    """Send what can go directly; return the rest (see the module docstring)."""
    if not ENABLED:
        return notes
    rest: list[tuple[str, bytes]] = []
    for note in notes:
        target, payload = note
        name = bell_name(target)
        if (
            name is None
            or len(payload) > _doorbell.MAX_PAYLOAD
            or not _sent(_RINGS + name, payload)
        ):
            rest.append(note)
    return rest


def _sent(ring: str, payload: bytes) -> bool:
    try:
        return _doorbell.send(ring, bytes(payload)) is _doorbell.Outcome.SENT
    except OSError as exc:
        log.debug("direct notification to %s failed: %s", ring, exc)
        return False
