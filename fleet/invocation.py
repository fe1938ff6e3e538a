"""Invocation handles and groups: what a task call returns.

Job: let the caller follow one call (`Invocation`) or a batch (`Group`): status, history,
blocking for the result, cancelling.

Contract: `result()` returns the task's value or raises the task's own exception type
(the remote traceback attached as a note and as `remote_traceback`); it raises
`TimeoutError` when `timeout` passes first, and `fleet.errors.CancelledError` for a
cancelled invocation. Inside a running task, waiting pauses the waiting invocation and
gives its worker slot away until the results arrive. Handles are cheap: status and
history are read from the state store when asked.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fleet.status import HistoryEntry, Status

if TYPE_CHECKING:
    from fleet.app import Fleet

R = TypeVar("R")


class Invocation(Generic[R]):
    """One call of a task, running or finished somewhere in the fleet."""

    __slots__ = ("__weakref__", "_inline", "app", "id", "task")

    def __init__(self, app: Fleet, invocation_id: str, task: str, *, watched: bool = False) -> None:
        self.app = app
        self.id = invocation_id
        self.task = task
        self._inline: _Inline | None = None
        if watched:
            weakref.finalize(self, app.forget, invocation_id)

    def __repr__(self) -> str:
        return f"<Invocation {self.task} {self.id}>"

    @classmethod
    def inline(
        cls,
        app: Fleet,
        task: str,
        invocation_id: str,
        *,
        value: Any = None,
        error: Exception | None = None,
    ) -> Invocation[Any]:
        """A handle for a call that already ran in the caller's thread (inline mode)."""
        invocation: Invocation[Any] = cls(app, invocation_id, task)
        invocation._inline = _Inline(value, error, time.time())
        return invocation

    @property
    def status(self) -> Status:
        if self._inline is not None:
            return self._inline.status
        return self.app.record(self.id).status

    @property
    def history(self) -> list[HistoryEntry]:
        if self._inline is not None:
            at = self._inline.at
            return [HistoryEntry(Status.RUNNING, at), HistoryEntry(self._inline.status, at)]
        return list(self.app.record(self.id).history)

    def done(self) -> bool:
        return self.status.final

    def wait(self, timeout: float | None = None) -> Invocation[R]:
        """Block until the invocation is final (whatever the outcome); return self."""
        if self._inline is None:
            self.app.outcomes([self.id], timeout)
        return self

    def result(self, timeout: float | None = None) -> R:
        """Block until finished; return the value or raise the task's exception."""
        if self._inline is not None:
            return self._inline.unwrap()  # type: ignore[no-any-return]
        outcome = self.app.outcomes([self.id], timeout)[self.id]
        return self.app.unwrap(self.task, outcome)  # type: ignore[no-any-return]

    async def aresult(self, timeout: float | None = None) -> R:
        """`result` for async code: awaits without blocking the event loop (`fleet.aio`)."""
        from fleet import aio

        value: R = await aio.result(self, timeout)
        return value

    def cancel(self) -> bool:
        """Stop the invocation: a pending one never runs, a running one is stopped.

        Returns True if this call cancelled it, False if it had already finished.
        """
        if self._inline is not None:
            return False
        return self.app.cancel(self.id)


class Group(Generic[R]):
    """Invocations submitted together. Iterating yields their results in input order."""

    def __init__(self, invocations: Sequence[Invocation[R]]) -> None:
        self.invocations = list(invocations)

    def __len__(self) -> int:
        return len(self.invocations)

    def __iter__(self) -> Iterator[R]:
        for invocation in self.invocations:
            yield invocation.result()

    def results(self, timeout: float | None = None) -> list[R]:
        """Every result, in input order; the first failure raises."""
        if not self.invocations:
            return []
        app = self.invocations[0].app
        remote = [i.id for i in self.invocations if i._inline is None]
        outcomes = app.outcomes(remote, timeout) if remote else {}
        return [
            i._inline.unwrap() if i._inline is not None else app.unwrap(i.task, outcomes[i.id])
            for i in self.invocations
        ]

    async def aresults(self, timeout: float | None = None) -> list[R]:
        """`results` for async code: awaits without blocking the event loop."""
        from fleet import aio

        return await aio.results(self.invocations, timeout)

    def wait(self, timeout: float | None = None) -> Group[R]:
        remote = [i.id for i in self.invocations if i._inline is None]
        if remote:
            self.invocations[0].app.outcomes(remote, timeout)
        return self

    def as_completed(self, timeout: float | None = None) -> Iterator[Invocation[R]]:
        """Yield each invocation as soon as it is final, fastest first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = {i.id: i for i in self.invocations}
        for invocation in self.invocations:
            if invocation._inline is not None:
                del pending[invocation.id]
                yield invocation
        while pending:
            app = next(iter(pending.values())).app
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            for outcome in app.outcomes_any(list(pending), left):
                yield pending.pop(outcome.id)


@dataclass(frozen=True, slots=True)
class _Inline:
    """The outcome of a call run in the caller's thread."""

    value: Any
    error: Exception | None
    at: float

    @property
    def status(self) -> Status:
        return Status.SUCCESS if self.error is None else Status.FAILED

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value
