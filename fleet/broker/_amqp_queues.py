"""Queues on RabbitMQ: arguments from a `QueueSpec`, declaration, and dead-letter reasons.

Job: map fleet's queue settings onto RabbitMQ queue arguments, declare every queue a
spec implies, explain a declaration that clashes with an existing queue, and turn the
headers of a dead-lettered message into a readable reason.

Contract:
- A spec `q` becomes: queue `q` and its urgent lane `q.urgent` (durable, same
  arguments; URGENT messages go there and consumers serve it first, because quorum
  queues in RabbitMQ 3.10 have no priorities), and unless `dead_letter: false` a fanout
  exchange `q.dlx` bound to queue `q.dead` (durable, same type). Arguments:
  `x-queue-type`; `x-delivery-limit` = delivery_limit - 1 (quorum; RabbitMQ allows
  limit + 1 deliveries, fleet's contract is "at most N"); `x-dead-letter-exchange`;
  `x-message-ttl` (ms, rounded up); `x-max-length` + `x-overflow` (a quorum queue
  that refuses publishes gets max_length - 1: RabbitMQ 3.10 accepts one message past
  its limit); `x-max-priority`. Quorum queues cannot do 'reject-publish-dlx' (RabbitMQ
  silently drops from the head instead), so that combination raises `ConfigError`.
  A dead-lettering quorum queue whose overflow is reject-publish (the default) also
  gets `x-dead-letter-strategy: at-least-once`, so RabbitMQ's own dead-lettering
  (delivery limit, TTL) cannot lose a message either.
- `mismatch_error` turns RabbitMQ's PRECONDITION_FAILED ("inequivalent arg ...") into a
  `QueueMismatchError` naming every differing setting (found by probing: the declare is
  repeated with the broker's value until it passes), both values and what to do.
- `reason_of` reads `x-fleet-reason` (fleet's explicit dead letters) or RabbitMQ's
  `x-death` (delivery limit, TTL, max length) and returns the same reasons as the
  embedded brokers ('expired', 'delivery limit N exceeded', ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleet.errors import ConfigError, QueueMismatchError
from fleet.queues import QueueSpec

URGENT_LANE = ".urgent"
REASON, QUEUE, AT, PRIOR = "x-fleet-reason", "x-fleet-queue", "x-fleet-at", "x-fleet-prior"
"""Headers fleet sets: dead-letter reason, source queue, time; deliveries before a copy."""
_BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death-", "x-last-death-", "x-fleet-")


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What a broker knows about one queue on RabbitMQ."""

    name: str
    urgent: bool
    """The urgent lane exists (else urgent messages go to the queue itself)."""
    dead_letter: bool
    """The dead-letter exchange exists."""
    spec: QueueSpec | None = None
    """The spec, when this process declared the queue."""


def urgent_lane(name: str) -> str:
    return name + URGENT_LANE


def arguments(spec: QueueSpec) -> dict[str, Any]:
    """RabbitMQ arguments of `spec`'s queue and urgent lane (see the module doc)."""
    args: dict[str, Any] = {"x-queue-type": spec.type}
    if spec.delivery_limit is not None and spec.type == "quorum":
        args["x-delivery-limit"] = spec.delivery_limit - 1
    if spec.dead_letter:
        args["x-dead-letter-exchange"] = spec.dead_letter_exchange
    if spec.message_ttl is not None:
        args["x-message-ttl"] = max(1, math.ceil(spec.message_ttl * 1000 - 1e-6))
    if spec.max_length is not None:
        if spec.type == "quorum" and spec.overflow == "reject-publish-dlx":
            raise ConfigError(
                f"queue {spec.name!r}: RabbitMQ quorum queues do not support overflow "
                "'reject-publish-dlx' (they would drop from the head instead); use "
                "'reject-publish' or 'drop-head', or type: classic"
            )
        # A quorum queue refuses a publish only once it is *over* its limit (RabbitMQ
        # 3.10 accepts max_length + 1 messages): one less makes "at most N" exact.
        quorum_refuses = spec.type == "quorum" and spec.overflow == "reject-publish"
        args["x-max-length"] = spec.max_length - 1 if quorum_refuses else spec.max_length
        args["x-overflow"] = spec.overflow
    if spec.type == "quorum" and spec.dead_letter and spec.overflow == "reject-publish":
        args["x-overflow"] = "reject-publish"
        args["x-dead-letter-strategy"] = "at-least-once"
    if spec.max_priority is not None:
        args["x-max-priority"] = spec.max_priority
    return args


# -- declaration mismatches ------------------------------------------------------------

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>\w+) '(?P<name>[^']*)' in vhost "
    r"'(?P<vhost>[^']*)': received (?P<received>.+?) but current is (?P<current>.+)$"
)
_VALUE = re.compile(r"^(?:the value )?'(?P<value>[^']*)'(?: of type '(?P<type>[^']+)')?$")
_SETTING = {
    "x-queue-type": "type",
    "x-delivery-limit": "delivery_limit",
    "x-dead-letter-exchange": "dead_letter",
    "x-message-ttl": "message_ttl",
    "x-max-length": "max_length",
    "x-overflow": "overflow",
    "x-max-priority": "max_priority",
    "x-dead-letter-strategy": "overflow",
}


@dataclass(frozen=True, slots=True)
class Difference:
    arg: str
    ours: Any
    theirs: Any
    """None where the argument is absent."""


def parse_inequivalent(text: str) -> Difference | None:
    """The argument named by a PRECONDITION_FAILED text, or None for another error."""
    found = _INEQUIVALENT.search(text)
    if found is None:
        return None
    return Difference(found["arg"], _parse_value(found["received"]), _parse_value(found["current"]))


def _parse_value(text: str) -> Any:
    text = text.strip()
    if text == "none":
        return None
    found = _VALUE.match(text)
    if found is None:
        return text
    value, kind = found["value"], found["type"] or ""
    if kind in ("longstr", "shortstr") or not re.fullmatch(r"-?\d+", value):
        return value
    return int(value)


def mismatch_error(
    queue: str, differences: list[Difference], spec: QueueSpec | None = None
) -> QueueMismatchError:
    """The error for a queue whose arguments on the broker differ from the spec."""
    parts = []
    for diff in differences:
        setting = _SETTING.get(diff.arg)
        if setting is None or spec is None:
            parts.append(
                f"{diff.arg}: configured {_show(diff.ours)}, on the broker {_show(diff.theirs)}"
            )
            continue
        ours, theirs = (_setting(diff.arg, v, spec) for v in (diff.ours, diff.theirs))
        parts.append(
            f"{setting}: configured {_show(ours)}, on the broker {_show(theirs)} "
            f"(RabbitMQ argument {diff.arg}: {_show(diff.ours)} vs {_show(diff.theirs)})"
        )
    return QueueMismatchError(
        f"queue {queue!r} already exists on RabbitMQ with other arguments than configured: "
        + "; ".join(parts)
        + ". RabbitMQ cannot change the arguments of an existing queue. Either change the "
        "queue's settings in the queues YAML file to match the broker, or move the queue: "
        "stop its producers, let workers drain it (or move its messages), delete it "
        f"(e.g. `rabbitmqctl delete_queue {queue}`), then run `fleet queues declare` again."
    )


def _setting(arg: str, value: Any, spec: QueueSpec) -> Any:
    """A RabbitMQ argument value in the units of the `QueueSpec` setting."""
    if value is None or not isinstance(value, int):
        return value
    if arg == "x-delivery-limit":
        return value + 1
    if arg == "x-message-ttl":
        return value / 1000
    if arg == "x-max-length" and spec.type == "quorum" and spec.overflow == "reject-publish":
        return value + 1
    return value


def _show(value: Any) -> str:
    return "nothing (absent)" if value is None else repr(value)


# -- dead letters ----------------------------------------------------------------------


def user_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The message's own headers: RabbitMQ's and fleet's bookkeeping removed."""
    if not headers:
        return {}
    return {str(k): text(v) for k, v in headers.items() if not str(k).startswith(_BROKER_HEADERS)}


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def reason_of(
    headers: Mapping[str, Any] | None, spec_of: Any, fallback_queue: str
) -> tuple[str, str, float]:
    """(reason, source queue, time) of a dead letter; `spec_of(queue)` -> QueueSpec|None."""
    headers = headers or {}
    if REASON in headers:
        at = float(text(headers.get(AT, "0")) or 0)
        return text(headers[REASON]), text(headers.get(QUEUE, fallback_queue)), at
    deaths = headers.get("x-death") or []
    if not deaths or not isinstance(deaths[0], Mapping):
        return "dead-lettered (no reason recorded)", fallback_queue, 0.0
    death = deaths[0]
    queue = text(death.get("queue", fallback_queue)).removesuffix(URGENT_LANE)
    when = death.get("time")
    at = when.timestamp() if isinstance(when, datetime) else 0.0
    why = text(death.get("reason", ""))
    spec: QueueSpec | None = spec_of(queue)
    if why == "expired":
        return "expired", queue, at
    if why == "delivery_limit":
        limit = f" {spec.delivery_limit}" if spec and spec.delivery_limit else ""
        return f"delivery limit{limit} exceeded", queue, at
    if why == "maxlen":
        if spec is None or spec.max_length is None:
            return "max length exceeded", queue, at
        how = "dropped from head" if spec.overflow == "drop-head" else "publish rejected"
        return f"max length {spec.max_length} exceeded ({how})", queue, at
    if why == "rejected":
        return "rejected by a consumer", queue, at
    return f"dead-lettered by RabbitMQ ({why or 'unknown reason'})", queue, at
