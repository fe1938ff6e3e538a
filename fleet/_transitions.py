"""Status changes applied to the state store, and the one place `after_change` is emitted.

Job: `apply(state, changes, dispatcher, tasks)` performs `state.apply(changes)` and tells
the extensions (`fleet.extensions.Dispatcher.after_change`) about the changes that
took effect. Every caller that changes an invocation's status goes through it (app,
records, results, aio, committer, executor, process claim, recovery); inline mode
builds its `Applied` itself (`applied_change`).

Contract:
- The return value is `state.apply`'s, unchanged; a store error propagates before any
  hook runs.
- Only changes that returned True are reported, in order, as one `Applied`.
- Nothing is built when no extension overrides `after_change`: the hot path pays one
  empty-tuple check.
- `tasks` names the task of each change (one name per change, or one name for all):
  `Change` carries no task. The previous status is known only when the change expected
  exactly one (None otherwise). Encoded arguments are not at hand here (None): an
  extension that needs them loads them, for the tasks it watches only.
- A hook's exception never reaches the caller (the dispatcher logs it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fleet.extensions import Applied, AppliedChange, Dispatcher
from fleet.state import Change, StateStore


def apply(
    state: StateStore,
    changes: Sequence[Change],
    dispatcher: Dispatcher | None,
    tasks: Sequence[str] | str,
    *,
    at: float | None = None,
) -> list[bool]:
    """`state.apply(changes)`, then `after_change` for those that took effect."""
    done = state.apply(changes) if at is None else state.apply(changes, at=at)
    if dispatcher is not None and dispatcher.after_change_hooks:
        emit(dispatcher, changes, done, tasks, at)
    return done


def emit(
    dispatcher: Dispatcher,
    changes: Sequence[Change],
    done: Sequence[bool],
    tasks: Sequence[str] | str,
    at: float | None = None,
) -> None:
    """Tell the extensions about the changes of `changes` marked True in `done`."""
    when = time.time() if at is None else at
    names = [tasks] * len(changes) if isinstance(tasks, str) else list(tasks)
    applied = tuple(
        applied_change(change, task, when)
        for change, ok, task in zip(changes, done, names, strict=True)
        if ok
    )
    if applied:
        dispatcher.after_change(Applied(applied))


def applied_change(change: Change, task: str, at: float) -> AppliedChange:
    """`change`, which took effect at `at`, as the hooks see it."""
    source = next(iter(change.expect)) if len(change.expect) == 1 else None
    return AppliedChange(
        invocation_id=change.id,
        task=task,
        source=source,
        status=change.to,
        result=change.result,
        error=change.error,
        at=at,
        note=change.note,
    )
