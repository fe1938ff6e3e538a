"""Invocation handles and groups: what a task call returns.

Job: let the caller follow one call (`Invocation`) or a batch (`Group`): status, history,
blocking for the result, cancelling.

Contract: `result()` returns the task's value or raises the task's own exception type
(the remote traceback attached as a note and as `remote_traceback`); it raises
`fleet.errors.ResultTimeoutError` (a `TimeoutError` naming what it waited for) when
`timeout` passes first, and `fleet.errors.CancelledError` for a
cancelled invocation. Inside a running task, waiting pauses the waiting invocation and
gives its worker slot away until the results arrive. Handles are cheap: status and
history are read from the state store when asked.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fleet.status import HistoryEntry, Status

if TYPE_CHECKING:
    from fleet._client import Client

R = TypeVar("R")


class Invocation(Generic[R]):
    """One call of a task, running or finished somewhere in the fleet."""

    __slots__ = ("__weakref__", "app", "id", "task")

    def __init__(
        self, app: Client, invocation_id: str, task: str, *, watched: bool = False
    ) -> None:
        self.app = app
        self.id = invocation_id
        self.task = task
        if watched:
            weakref.finalize(self, app.forget, invocation_id)

    def __repr__(self) -> str:
        return f"<Invocation {self.task} {self.id}>"

    @property
    def status(self) -> Status:
        return self.app.record(self.id).status

    @property
    def history(self) -> list[HistoryEntry]:
        return list(self.app.record(self.id).history)

    def done(self) -> bool:
        return self.status.final

    def wait(self, timeout: float | None = None) -> Invocation[R]:
        """Block until the invocation is final (whatever the outcome); return self.

        Raises:
            fleet.errors.ResultTimeoutError: `timeout` seconds passed first.
        """
        self.app.outcomes([self.id], timeout)
        return self

    def result(self, timeout: float | None = None) -> R:
        """Block until finished; return the value or raise the task's exception.

        Raises:
            fleet.errors.ResultTimeoutError: `timeout` seconds passed first (a
                `TimeoutError` naming the invocation, its status, queue and consumers).
        """
        outcome = self.app.outcomes([self.id], timeout)[self.id]
        return self.app.unwrap(self.task, outcome)  # type: ignore[no-any-return]

    async def aresult(self, timeout: float | None = None) -> R:
        """`result` for async code: awaits without blocking the event loop (`fleet.aio`)."""
        value: R = (await self.app.aresults([self], timeout))[0]
        return value

    def cancel(self) -> bool:
        """Stop the invocation: a pending one never runs, a running one is stopped.

        Returns True if this call cancelled it, False if it had already finished.
        """
        return self.app.cancel(self.id)


class InlineInvocation(Invocation[R]):
    """A call that already ran in the caller's thread (inline mode, `fleet._inline`).

    Everything is answered from memory: no state store, no broker.
    """

    __slots__ = ("_error", "_history", "_value")

    def __init__(
        self,
        app: Client,
        invocation_id: str,
        task: str,
        history: Sequence[HistoryEntry],
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(app, invocation_id, task)
        self._history = tuple(history)
        self._value = value
        self._error = error

    @property
    def status(self) -> Status:
        return self._history[-1].status

    @property
    def history(self) -> list[HistoryEntry]:
        return list(self._history)

    def wait(self, timeout: float | None = None) -> Invocation[R]:
        return self

    def result(self, timeout: float | None = None) -> R:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]

    async def aresult(self, timeout: float | None = None) -> R:
        return self.result()

    def cancel(self) -> bool:
        return False  # it has already finished


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
        remote = [i.id for i in self.invocations if not isinstance(i, InlineInvocation)]
        outcomes = app.outcomes(remote, timeout) if remote else {}
        return [
            i.result() if isinstance(i, InlineInvocation) else app.unwrap(i.task, outcomes[i.id])
            for i in self.invocations
        ]

    async def aresults(self, timeout: float | None = None) -> list[R]:
        """`results` for async code: awaits without blocking the event loop."""
        if not self.invocations:
            return []
        return await self.invocations[0].app.aresults(self.invocations, timeout)

    def wait(self, timeout: float | None = None) -> Group[R]:
        remote = [i.id for i in self.invocations if not isinstance(i, InlineInvocation)]
        if remote:
            self.invocations[0].app.outcomes(remote, timeout)
        return self

    def as_completed(self, timeout: float | None = None) -> Iterator[Invocation[R]]:
        """Yield each invocation as soon as it is final, fastest first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = {i.id: i for i in self.invocations}
        for invocation in self.invocations:
            if isinstance(invocation, InlineInvocation):
                del pending[invocation.id]
                yield invocation
        while pending:
            app = next(iter(pending.values())).app
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            for outcome in app.outcomes_any(list(pending), left):
                yield pending.pop(outcome.id)
