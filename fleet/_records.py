"""What a producer writes about its invocations when submitting them fails half-way.

Job: the two places where a caller is told "your call failed" while something of it may
already exist (records in the state store, a message at the broker), written once for
the sync and the asyncio producers.

Contract:
- `register(state, records)` writes the records. When the store raises, the records may
  or may not have been written (the connection lost after the insert), and with a
  broker that sends early (RabbitMQ) their messages may already be at a worker. The
  caller is told the call failed, so nothing of it may run behind its back: each record
  is changed, best effort, from PENDING to FAILED (SCHEDULED to CANCELLED: a scheduled
  invocation cannot fail before it runs) with the note `UNKNOWN_NOTE`, so that a
  worker's claim (a compare-and-set from PENDING) loses. Then every record is either
  final or absent, and the store's own error is re-raised; or some could not be
  changed (the store is still down, or a worker claimed one first), and
  `RegistrationUnknownError` (a `StateError`) names the invocations that may still run,
  chained to the store's error. A refused id (`DuplicateInvocationError`: an id given
  by the caller is already registered, e.g. a trigger's recovery racing its first
  submit) wrote nothing and is re-raised as is: the records with that id are not the
  caller's to change.
- `mark_unpublished(state, ids, exc)` fails PENDING invocations whose publish was not
  confirmed (`PublishError`): an invocation is never left behind silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from fleet import _transitions
from fleet.errors import DuplicateInvocationError, PublishError, RegistrationUnknownError
from fleet.extensions import Dispatcher
from fleet.state import Change, ErrorInfo, InvocationRecord, StateStore
from fleet.status import Status

log = logging.getLogger(__name__)
UNKNOWN_NOTE = "registration outcome unknown; the caller was told it failed"
PENDING = frozenset({Status.PENDING})


def register(
    state: StateStore,
    records: Sequence[InvocationRecord],
    dispatcher: Dispatcher | None = None,
    write: Callable[[Sequence[InvocationRecord]], None] | None = None,
) -> None:
    """Write `records` (with `write`, default `state.register`; `fleet._colocated`
    writes their messages in the same transaction); on failure see the module
    docstring (`dispatcher` hears of the records made final).

    Raises:
        RegistrationUnknownError: the store failed and some invocations may still run.
        StateError: the store failed and none of the invocations will run.
    """
    try:
        (state.register if write is None else write)(records)
    except DuplicateInvocationError:
        raise  # refused whole: nothing was written, and the existing records are not ours
    except Exception as exc:
        unsure = _disown(state, records, exc, dispatcher)
        if not unsure:
            raise
        task = records[0].task if records else "?"
        raise RegistrationUnknownError(
            f"registering {len(records)} invocation(s) of {task} failed ({exc}), and "
            f"{len(unsure)} of them may have been registered anyway and may still run: "
            + ", ".join(unsure),
            tuple(unsure),
        ) from exc


def _disown(
    state: StateStore,
    records: Sequence[InvocationRecord],
    exc: Exception,
    dispatcher: Dispatcher | None,
) -> list[str]:
    """Make what may have been written final; return the ids that may still run."""
    error = ErrorInfo(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc))
    changes = [
        Change(
            r.id,
            Status.CANCELLED if r.status is Status.SCHEDULED else Status.FAILED,
            frozenset({r.status}),
            note=UNKNOWN_NOTE,
            error=error,
        )
        for r in records
    ]
    try:
        applied = _transitions.apply(state, changes, dispatcher, [r.task for r in records])
        left = [r.id for r, done in zip(records, applied, strict=True) if not done]
        # Not changed: never written (nothing to run), or claimed by a worker first.
        running = [r.id for r in state.get(left) if not r.status.final] if left else []
    except Exception:
        log.warning(
            "registration of %d invocation(s) of %s failed and its outcome cannot be "
            "settled; they may still run: %s",
            len(records),
            records[0].task if records else "?",
            ", ".join(r.id for r in records),
            exc_info=True,
        )
        return [r.id for r in records]
    for invocation_id in running:
        log.warning(
            "registration reported a failure, yet the invocation was claimed and runs",
            extra={"invocation_id": invocation_id, "task": records[0].task},
        )
    return running


def mark_unpublished(
    state: StateStore,
    ids: Sequence[str],
    exc: PublishError,
    dispatcher: Dispatcher | None = None,
    task: str = "",
) -> None:
    """Fail the PENDING invocations `ids` (of `task`), whose publish was not confirmed."""
    error = ErrorInfo("fleet.errors.PublishError", str(exc))
    changes = [
        Change(i, Status.FAILED, PENDING, note="publish not confirmed", error=error) for i in ids
    ]
    _transitions.apply(state, changes, dispatcher, task)
