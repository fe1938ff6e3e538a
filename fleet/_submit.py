"""The submit path of `Fleet`: calls of a task turned into registered, published
invocations.

Job: encode a batch of calls (`fleet._prepare`), let the extensions screen them
(`fleet._screen`) and wrap the publish (`around_publish`), register the records and
publish the messages, and hand back the handles (inline mode and workflows divert the
call in `Fleet.submit` first). `Fleet.submit`, `Fleet.publish` and `Fleet.prepare` delegate here.

Contract: arguments are encoded first, so bad input fails at the
call site before anything is written; the extensions' `before_publish` may then reuse
existing invocations for some calls (`fleet._screen`: those are not registered, their
handles follow the existing ones); then the messages are handed to the broker
(`Broker.begin_publish`), the invocation records are registered in the state store in
one batch, and the broker's confirms are awaited. On RabbitMQ with
`publish_confirm = "background"` (the default) the records are written first and the
call returns then, the confirms awaited by `fleet._pipeline` (where the guarantee that
a call that returned is never lost is stated); otherwise: a broker that sends at once
(RabbitMQ) thus confirms while the records are written, instead of after; the others
publish only after the records are written, as before. A call returns only once every
message is confirmed. If the publish is not confirmed, the invocations are marked
FAILED with the reason and the caller gets `PublishError`: an invocation is never left
behind silently. Scheduled calls (`due`) are only registered. Connections are opened
lazily, once per process (a forked child opens its own).

Because a message may reach a worker before its record, a worker that finds no record
holds the message and claims it again, for up to `RECORD_GRACE` seconds
(`fleet.worker._early`). The windows this opens, and what closes each:
- The producer dies after the message left and before the record was written: no
  record ever comes, and the worker dead-letters the message with the reason after
  `RECORD_GRACE`. The caller never got a handle, so nothing it was promised is lost.
- Writing the records fails: the publish is abandoned, a message already sent is
  dead-lettered as above, and what may have been written anyway is made final so that
  it never runs; if even that cannot be made sure of, the caller gets
  `RegistrationUnknownError` naming the invocations that may still run, else the state
  store's error (`fleet._records`).
- Writing the records took more than half of `RECORD_GRACE`: a worker may have given
  up on the message meanwhile, so it is published once more after the records exist
  (a second delivery is harmless: the claim is a compare-and-set).
- The producer dies after the records were written and before the confirm: as with
  the other order, the record stays PENDING with a deadline (`pending_timeout`) after
  which recovery publishes it again.

The embedded default (state store and broker in the same SQLite file) writes the
records and their messages in one commit instead (`fleet._colocated`), so none of the
windows above exists there.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fleet import _colocated, _context, _followup, _pipeline, _prepare, _records, _screen
from fleet._envelope import RECORD_GRACE
from fleet.broker import Message, Publishing
from fleet.errors import PublishError
from fleet.extensions import Publish
from fleet.invocation import Invocation

if TYPE_CHECKING:
    from fleet._runtime import Runtime
    from fleet.app import Fleet
    from fleet.task import Task


def submit(
    app: Fleet,
    task: Task[Any, Any],
    bounds: Sequence[inspect.BoundArguments],
    due: float | None = None,
    ids: Sequence[str] | None = None,
    keys: Sequence[str] = (),
) -> list[Invocation[Any]]:
    """`Fleet.submit` once inline mode and workflows are ruled out: see there and the
    module docstring."""
    runtime = app.runtime()
    prepared = _prepare.prepare(app, runtime, task, bounds, due, ids=ids)
    handles = prepared.ids
    if app.dispatcher.before_publish_hooks:  # may reuse existing invocations
        prepared, handles = _screen.screen(app.dispatcher, task, prepared, keys)
    ids = prepared.ids
    runtime.waiter.watch(handles)
    if len(ids) < len(handles):
        _screen.deliver_final(runtime, _screen.outside(prepared, handles))
    if not ids:
        pass  # every call reused an existing invocation
    elif due is None:
        _register_and_publish(app, runtime, prepared)
    else:
        _records.register(runtime.state, prepared.records(), app.dispatcher)
        _followup.hold(app, ids, due)
    execution = _context.current()
    if execution is not None:
        execution.children.extend(ids)
    return [Invocation(app, i, task.name, watched=True) for i in handles]


def _register_and_publish(app: Fleet, runtime: Runtime, prepared: _prepare.Prepared) -> None:
    """Register while the broker confirms (inside the `around_publish` hooks)."""
    if not app.dispatcher.around_publish_hooks:
        _send(app, runtime, prepared, prepared.messages)
        return
    publish = Publish(prepared.task, tuple(prepared.ids), prepared.queue)

    def proceed() -> None:
        extra = publish.headers
        messages = prepared.messages
        if extra:
            messages = [replace(m, headers={**m.headers, **extra}) for m in messages]
        _send(app, runtime, prepared, messages)

    app.dispatcher.around_publish(publish, proceed)


def _send(
    app: Fleet, runtime: Runtime, prepared: _prepare.Prepared, messages: Sequence[Message]
) -> None:
    """Register while the broker confirms; see the module docstring."""
    runtime.declare([prepared.queue])
    if _colocated.shared(runtime, prepared.queue):
        _colocated.send(runtime, prepared, messages, app.dispatcher)
        return
    if runtime.broker.sends_early and app.settings.publish_confirm == "background":
        _records.register(runtime.state, prepared.records(), app.dispatcher)
        _pipeline.of(app, runtime).put(messages, prepared.task)
        return
    began = time.monotonic()
    publishing = runtime.broker.begin_publish(messages)
    try:
        _records.register(runtime.state, prepared.records(), app.dispatcher)
    except BaseException:
        publishing.abandon()
        raise
    if runtime.broker.sends_early and time.monotonic() - began > RECORD_GRACE / 2:
        confirm(app, publishing, messages, prepared.task)
        publishing = runtime.broker.begin_publish(messages)
    confirm(app, publishing, messages, prepared.task)


def publish(app: Fleet, messages: Sequence[Message]) -> None:
    """`Fleet.publish`: publish invocation messages; on failure mark them FAILED."""
    runtime = app.runtime()
    runtime.declare(sorted({m.queue for m in messages}))
    confirm(app, runtime.broker.begin_publish(messages), messages)


def confirm(
    app: Fleet, publishing: Publishing, messages: Sequence[Message], task: str = ""
) -> None:
    """Wait for a publish; on failure mark its invocations (of `task`) FAILED, re-raise."""
    try:
        publishing.wait()
        _followup.of(app).published(messages)
    except PublishError as exc:
        ids = [m.invocation_id for m in messages]
        _records.mark_unpublished(app.runtime().state, ids, exc, app.dispatcher, task)
        raise
