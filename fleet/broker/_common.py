"""Pieces shared by the embedded brokers (memory and SQLite).

Job: the rules both embedded brokers apply the same way, so that they cannot drift
apart: checking messages before a publish, planning what a full queue does with a batch
(`max_length` and `overflow` of its `QueueSpec`), the dead-letter reasons, and storing a
`QueueSpec` as JSON.

Contract: pure functions, no I/O. `plan_overflow` follows RabbitMQ where it can: only
ready messages count towards `max_length`; 'drop-head' dead-letters the oldest ready
messages to make room; 'reject-publish' refuses the whole batch (nothing is published);
'reject-publish-dlx' refuses it too and dead-letters the messages that did not fit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

from fleet.broker import Message
from fleet.errors import BrokerError, PublishError
from fleet.queues import QueueSpec

DEFAULT_VISIBILITY_TIMEOUT = 30.0
"""Seconds a delivered, unacked message stays invisible before it is delivered again."""
DEFAULT_POLL_INTERVAL = 1.0
"""Longest an idle consumer sleeps between checks when nothing rings (safety net)."""

EXPIRED = "expired"

_SPEC_FIELDS = {f.name for f in fields(QueueSpec)}


def delivery_limit_reason(limit: int) -> str:
    return f"delivery limit {limit} exceeded"


def check_messages(messages: Sequence[Message]) -> None:
    """Refuse a batch with something that is not a publishable message."""
    for message in messages:
        if not isinstance(message, Message):
            raise PublishError(f"publish takes Message objects, got {message!r}")
        if not message.queue or not isinstance(message.queue, str):
            raise PublishError(f"message {message.invocation_id!r} names no queue")
        if not isinstance(message.body, (bytes, bytearray, memoryview)):
            raise PublishError(
                f"message {message.invocation_id!r} to queue {message.queue!r}: body must "
                f"be bytes, got {type(message.body).__name__}"
            )
        if type(message.priority) is not int:
            raise PublishError(
                f"message {message.invocation_id!r}: priority must be an int, "
                f"got {message.priority!r}"
            )


def check_queues(queues: Sequence[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(queues))
    if not names or not all(isinstance(q, str) and q for q in names):
        raise BrokerError(f"a consumer needs one or more queue names, got {queues!r}")
    return names


def check_prefetch(prefetch: int) -> None:
    if not isinstance(prefetch, int) or prefetch < 0:
        raise BrokerError(f"prefetch must be an integer >= 0, got {prefetch!r}")


@dataclass
class Overflow:
    """What to do with a batch, given the queues' length limits."""

    accept: list[Message] = field(default_factory=list)
    """Messages to enqueue (in batch order)."""
    drop_head: dict[str, int] = field(default_factory=dict)
    """Per queue, how many of the oldest ready messages to dead-letter first."""
    dead: list[tuple[Message, str]] = field(default_factory=list)
    """New messages that go straight to the dead letters (with the reason)."""
    refused: dict[str, int] = field(default_factory=dict)
    """Per queue, messages over the limit of a 'reject-publish*' queue."""
    refused_dead: list[tuple[Message, str]] = field(default_factory=list)
    """The refused messages of 'reject-publish-dlx' queues (dead-lettered anyway)."""

    def error(self, specs: Callable[[str], QueueSpec]) -> PublishError:
        parts = [
            f"queue {q!r} is full (max_length {specs(q).max_length}, "
            f"overflow {specs(q).overflow!r}): {n} message(s) did not fit"
            for q, n in self.refused.items()
        ]
        return PublishError("; ".join(parts) + "; nothing was published")


def plan_overflow(
    messages: Sequence[Message],
    ready: Mapping[str, int],
    specs: Callable[[str], QueueSpec],
) -> Overflow:
    """Decide the fate of each message of a batch (see the module docstring).

    `ready` holds the current ready count of every queue that has a `max_length`.
    """
    plan = Overflow()
    accepted: dict[int, Message] = {}
    new_of: dict[str, list[int]] = {}
    count = dict(ready)
    old_left = dict(ready)
    for index, message in enumerate(messages):
        spec = specs(message.queue)
        limit = spec.max_length
        if limit is None or count[message.queue] < limit:
            accepted[index] = message
            if limit is not None:
                count[message.queue] += 1
                new_of.setdefault(message.queue, []).append(index)
            continue
        queue = message.queue
        if spec.overflow == "drop-head":
            reason = f"max length {limit} exceeded (dropped from head)"
            accepted[index] = message
            new_of.setdefault(queue, []).append(index)
            if old_left[queue] > 0:
                old_left[queue] -= 1
                plan.drop_head[queue] = plan.drop_head.get(queue, 0) + 1
            else:
                oldest = new_of[queue].pop(0)
                plan.dead.append((accepted.pop(oldest), reason))
        else:
            plan.refused[queue] = plan.refused.get(queue, 0) + 1
            if spec.overflow == "reject-publish-dlx":
                reason = f"max length {limit} exceeded (publish rejected)"
                plan.refused_dead.append((message, reason))
    plan.accept = [accepted[i] for i in sorted(accepted)]
    return plan


def spec_to_json(spec: QueueSpec) -> str:
    return json.dumps(asdict(spec))


def spec_from_json(text: str) -> QueueSpec:
    data = {k: v for k, v in json.loads(text).items() if k in _SPEC_FIELDS}
    data["tasks"] = tuple(data.get("tasks", ()))
    return QueueSpec(**data)


def headers_json(headers: Mapping[str, str]) -> str | None:
    return json.dumps(dict(headers), separators=(",", ":")) if headers else None


def headers_from(text: str | None) -> dict[str, str]:
    return dict(json.loads(text)) if text else {}
