"""Calls of a task turned into what submitting them writes: messages and records.

Job: encode a batch of calls of one task into the broker messages that carry them and
the invocation records that describe them, for `Fleet.submit` and the asyncio API.

Contract: `prepare` encodes the arguments (raising at the call site on bad input),
stores large argument values as blobs (`fleet._values`), and builds the messages; it
writes nothing else. The records are built by `Prepared.records()`, on demand, so that
a producer can hand the messages to the broker first and build the records while they
travel. Both describe the same invocations (ids, arguments, reply address, parent).
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fleet import _context, _values
from fleet._envelope import Envelope, pack
from fleet._value_class import value_class
from fleet.broker import URGENT, Message
from fleet.codec import call_key, encode_call
from fleet.signing import signer
from fleet.state import InvocationRecord
from fleet.status import HistoryEntry, Status

if TYPE_CHECKING:
    from fleet._runtime import Runtime
    from fleet.app import Fleet
    from fleet.task import Task


def new_id() -> str:
    """A unique, time-ordered invocation id (32 hex digits)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


@value_class
class Prepared:
    """Encoded calls of one task: their messages, and their records on demand."""

    task: str
    queue: str
    codec: str
    status: Status
    now: float
    due: float
    parent: str
    reply_to: str
    ids: list[str]
    args: list[bytes]
    """Arguments as stored (a blob reference for a large value)."""
    encoded: list[bytes]
    """Arguments as encoded (what the call key is computed from)."""
    messages: list[Message]

    def only(self, keep: Sequence[str]) -> Prepared:
        """The same calls, less those whose id is not in `keep` (in their order)."""
        wanted = set(keep)
        kept = [i for i, invocation_id in enumerate(self.ids) if invocation_id in wanted]
        return replace(
            self,
            ids=[self.ids[i] for i in kept],
            args=[self.args[i] for i in kept],
            encoded=[self.encoded[i] for i in kept],
            messages=[self.messages[i] for i in kept],
        )

    def records(self, deadline: bool = True) -> list[InvocationRecord]:
        """The invocation records; without `deadline`, PENDING ones get no recovery
        deadline (`due`): their messages are committed with them (`fleet._colocated`)."""
        due = self.due if deadline or self.status is not Status.PENDING else None
        history = (HistoryEntry(self.status, self.now, "", "submitted"),)
        return [
            InvocationRecord(
                id=invocation_id,
                task=self.task,
                queue=self.queue,
                args=args,
                codec=self.codec,
                status=self.status,
                call_key=call_key(self.task, data),
                history=history,
                due=due,
                parent=self.parent,
                reply_to=self.reply_to,
                created=self.now,
                updated=self.now,
            )
            for invocation_id, args, data in zip(self.ids, self.args, self.encoded, strict=True)
        ]


def prepare(
    app: Fleet,
    runtime: Runtime,
    task: Task[Any, Any],
    bounds: Sequence[inspect.BoundArguments],
    due: float | None = None,
    reply_to: str | None = None,
    ids: Sequence[str] | None = None,
) -> Prepared:
    """See the module docstring; `reply_to` defaults to this process's waiter; `ids`
    to new ids (`new_id`), else one per call."""
    codec = app.codec
    encoded = [encode_call(codec, task.name, b.args, b.kwargs, task.params) for b in bounds]
    reply_to = runtime.waiter.address if reply_to is None else reply_to
    queue = app.queues.route(task.name, task.options.queue)
    execution = _context.current()
    parent = execution.invocation_id if execution else ""
    # A child of a running task is probably awaited by it: serve it before new work.
    priority = URGENT if execution else 0
    now = time.time()
    threshold = app.settings.large_value_threshold
    if ids is None:
        ids = [new_id() for _ in encoded]
    elif len(ids) != len(encoded):
        raise ValueError(f"{task.name}: {len(ids)} invocation id(s) for {len(encoded)} call(s)")
    ids = list(ids)
    args = [_values.externalize(runtime.state, data, threshold) for data in encoded]
    bodies = [
        pack(Envelope(i, task.name, a, codec.name, reply_to, parent, task.module))
        for i, a in zip(ids, args, strict=True)
    ]
    sign = signer(app.settings).headers
    messages = [
        Message(queue, body, i, priority, sign(body)) for i, body in zip(ids, bodies, strict=True)
    ]
    return Prepared(
        task=task.name,
        queue=queue,
        codec=codec.name,
        status=Status.PENDING if due is None else Status.SCHEDULED,
        now=now,
        due=now + app.settings.pending_timeout if due is None else due,
        parent=parent,
        reply_to=reply_to,
        ids=ids,
        args=args,
        encoded=encoded,
        messages=messages,
    )
