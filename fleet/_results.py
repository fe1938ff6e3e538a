"""Waiting for invocations and reading what they became: the results half of `Fleet`.

Job: block until invocations are final (a task that waits pauses and gives its worker
slot away), turn an outcome into the task's value or exception, read records, cancel.

Contract:
- `outcomes` returns a complete outcome per id (read from the state store when the
  notification did not carry it whole); when `timeout` passes first it raises
  `ResultTimeoutError` naming status, queue and consumers (`fleet._timeouts`).
- `unwrap` returns the value, or raises the task's own exception (rebuilt, with the
  remote traceback), `CancelledError` for a cancelled invocation.
- `cancel` changes the record to CANCELLED by compare-and-set from the status it read
  (ten tries under contention), then tells the owner and the waiting caller; False when
  the invocation had already finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fleet import _context, _transitions, _values
from fleet._envelope import Outcome, pack_cancel, pack_outcome
from fleet._exceptions import rebuild
from fleet._runtime import Runtime
from fleet._timeouts import result_timeout
from fleet._waiter import outcome_of
from fleet.codec import Codec
from fleet.errors import CancelledError, InvocationNotFoundError, ResultTimeoutError
from fleet.extensions import Dispatcher
from fleet.state import Change, InvocationRecord, StateStore
from fleet.status import Status


def outcomes(runtime: Runtime, ids: Sequence[str], timeout: float | None) -> dict[str, Outcome]:
    """Block until every id is final; inside a task this pauses the invocation."""
    execution = _context.current()
    try:
        if execution is not None and ids:
            found = execution.pauser.pause_for(execution, ids, timeout)
        else:
            found = runtime.waiter.wait(ids, timeout)
    except ResultTimeoutError:
        raise
    except TimeoutError:
        raise result_timeout(runtime.state, runtime.broker, ids, timeout) from None
    incomplete = [i for i, o in found.items() if not o.complete]
    for found_record in runtime.state.get(incomplete) if incomplete else ():
        outcome = outcome_of(found_record)
        if outcome is not None:
            found[found_record.id] = outcome
    return found


def outcomes_any(runtime: Runtime, ids: Sequence[str], timeout: float | None) -> list[Outcome]:
    """Block until at least one id is final; return the final ones."""
    try:
        found = runtime.waiter.wait_any(ids, timeout)
    except TimeoutError:
        raise result_timeout(runtime.state, runtime.broker, ids, timeout) from None
    return list(outcomes(runtime, [o.id for o in found], 0).values()) if found else []


def unwrap(codec: Codec, state: Callable[[], StateStore], task: str, outcome: Outcome) -> Any:
    """The value of a finished invocation, or raise its error; `state` is called only
    for a value stored apart (a large one)."""
    if outcome.status is Status.SUCCESS:
        data = outcome.result or b""
        if _values.is_reference(data):
            data = _values.resolve(state(), data)
        return codec.decode(data)
    if outcome.status is Status.CANCELLED:
        raise CancelledError(f"invocation {outcome.id} of {task} was cancelled")
    if outcome.error is not None:
        raise rebuild(outcome.error)
    raise InvocationNotFoundError(f"invocation {outcome.id} ended {outcome.status.value}")


def record(state: StateStore, invocation_id: str) -> InvocationRecord:
    """The stored record of an invocation; `InvocationNotFoundError` if none."""
    found = state.get([invocation_id])
    if not found:
        raise InvocationNotFoundError(f"no invocation {invocation_id!r} in the state store")
    return found[0]


def cancel(
    runtime: Runtime, invocation_id: str, by: str, dispatcher: Dispatcher | None = None
) -> bool:
    """Cancel an invocation; see the module docstring."""
    for _ in range(10):
        current = record(runtime.state, invocation_id)
        if current.status.final:
            return False
        change = Change(
            invocation_id,
            Status.CANCELLED,
            frozenset({current.status}),
            by=by,
            expect_owner=current.owner or None,
            note="cancelled",
        )
        if _transitions.apply(runtime.state, [change], dispatcher, current.task)[0]:
            break
    else:  # pragma: no cover - ten concurrent changes in a row
        return False
    notes = []
    if current.owner:
        for runner in runtime.state.runners():
            address = runner.info.get("address")
            if runner.id == current.owner and isinstance(address, str):
                notes.append((address, pack_cancel(invocation_id)))
    if current.reply_to:
        notes.append((current.reply_to, pack_outcome(Outcome(invocation_id, Status.CANCELLED))))
    if notes:
        runtime.broker.notify(notes)
    return True
