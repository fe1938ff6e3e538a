"""Calls screened by the extensions before they are registered (`before_publish`).

Job: for the sync and the asyncio producers, hand a prepared batch of calls to the
extensions' `before_publish` hooks and apply their `Reuse` decisions: the calls they
reuse are not registered, and their callers get a handle on the existing invocation.

Contract:
- Called only when some extension overrides `before_publish` (the producer checks
  `dispatcher.before_publish_hooks` first: one empty-tuple check otherwise).
- `screen` returns the calls left to register (a `Prepared` of those, possibly empty)
  and, per call in order, the id its caller's handle follows: its own, or the id of
  the invocation it reuses (followed through a chain of reuses inside the batch).
- An `ExtensionError` from a hook propagates: nothing of the batch is registered.
- Reused invocations that are already final (a cached result, an idempotency key whose
  call finished) are read once, so their callers have the outcome at once instead of
  after the waiter's fallback poll; the others' outcomes reach this process through
  that fallback (their notifications go to the process that submitted them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fleet._waiter import outcome_of
from fleet.extensions import PublishBatch, Reuse
from fleet.status import Status

if TYPE_CHECKING:
    from fleet._prepare import Prepared
    from fleet._runtime import Runtime
    from fleet.extensions import Dispatcher
    from fleet.task import Task

log = logging.getLogger(__name__)


def screen(
    dispatcher: Dispatcher,
    task: Task[Any, Any],
    prepared: Prepared,
    keys: Sequence[str] = (),
) -> tuple[Prepared, list[str]]:
    """Ask `before_publish`; see the module docstring. `keys`: idempotency keys, one
    per call ('' for none) or () for none at all."""
    batch = PublishBatch(
        task=task.name,
        ids=tuple(prepared.ids),
        args=tuple(prepared.encoded),
        codec=prepared.codec,
        options=task.options.extensions,
        due=None if prepared.status is Status.PENDING else prepared.due,
        idempotency_keys=tuple(keys),
    )
    reuses = dispatcher.before_publish(batch)
    # Registered from now on: the records say so (an invocation that owns a key is
    # registered after the one before it ended, as the history shows).
    prepared = replace(prepared, now=time.time())
    if not reuses:
        return prepared, prepared.ids
    by_id: dict[str, Reuse] = {r.invocation_id: r for r in reuses if r.invocation_id in batch.ids}
    handles = [_follow(invocation_id, by_id) for invocation_id in prepared.ids]
    for reuse in by_id.values():
        log.info(
            "%s: call %s not registered, reusing %s (%s)",
            task.name,
            reuse.invocation_id,
            reuse.existing,
            reuse.reason,
            extra={"invocation_id": reuse.existing, "task": task.name},
        )
    return prepared.only([i for i in prepared.ids if i not in by_id]), handles


def _follow(invocation_id: str, by_id: dict[str, Reuse]) -> str:
    seen = {invocation_id}
    while invocation_id in by_id:
        invocation_id = by_id[invocation_id].existing
        if invocation_id in seen:  # a cycle would be an extension's bug: stop there
            break
        seen.add(invocation_id)
    return invocation_id


def outside(prepared: Prepared, handles: Sequence[str]) -> list[str]:
    """The ids `handles` follow that the batch does not register (reused ones)."""
    own = set(prepared.ids)
    return sorted({h for h in handles if h not in own})


def deliver_final(runtime: Runtime, ids: Sequence[str]) -> None:
    """Hand the waiter the outcomes of those of `ids` (reused, watched) already final."""
    if not ids:
        return
    found = [o for o in map(outcome_of, runtime.state.get(ids)) if o is not None]
    if found:
        runtime.waiter.deliver(found)
