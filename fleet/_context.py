"""The invocation a worker thread is running, for code that runs inside a task.

Job: let `Invocation.result()` and task calls made inside a task know that they run on a
worker, on behalf of which invocation, so that waiting pauses the invocation (and frees
its slot) and sub-invocations record their parent. Contract: `current()` is None outside
a worker (producers, inline mode); the worker sets it around each task run.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fleet._envelope import Outcome


class Pauser(Protocol):
    """What the worker offers to a task that waits on other invocations."""

    def pause_for(
        self, execution: Execution, ids: Sequence[str], timeout: float | None
    ) -> dict[str, Outcome]:
        """Block until every id is final, giving the slot away meanwhile."""


@dataclass(slots=True)
class Execution:
    """One running invocation, as seen from inside its task."""

    invocation_id: str
    task: str
    attempt: int
    pauser: Pauser
    children: list[str] = field(default_factory=list)


_current: ContextVar[Execution | None] = ContextVar("fleet_execution", default=None)


def current() -> Execution | None:
    return _current.get()


def enter(execution: Execution | None) -> object:
    """Make `execution` current; return a token for `leave`."""
    return _current.set(execution)


def leave(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]  # token from enter()
