"""The invocation a worker thread is running, for code that runs inside a task.

Job: let `Invocation.result()` and task calls made inside a task know that they run on a
worker, on behalf of which invocation, so that waiting pauses the invocation (and frees
its slot) and sub-invocations record their parent. Contract: `current()` is None outside
a worker (producers, inline mode); the worker sets it around each task run.

Two seams for code that runs a task body under a runtime of its own (`fleet.workflows`):
- `intercept(submitter)`: while set, `Fleet.submit` of calls without preset ids hands
  them to the submitter (which records them, and submits them with ids of its own).
- `Suspend(due, reason)`: raised out of a task body, it ends the attempt without an
  outcome: the worker holds the invocation (RETRY until `due`, its attempt given back)
  and frees the slot and thread; it runs again when due or when released earlier.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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


class Suspend(BaseException):
    """End this attempt without an outcome; run the invocation again at `due` (epoch
    seconds) or when released earlier. See the module docstring."""

    def __init__(self, due: float, reason: str) -> None:
        super().__init__(f"suspended until {due:.3f}: {reason}")
        self.due = due
        self.reason = reason


class Submitter(Protocol):
    """Takes over `Fleet.submit` for calls made under it (see `intercept`)."""

    def submit(self, task: Any, bounds: Sequence[Any], due: float | None) -> list[Any]:
        """Submit (or find again) the calls; return their handles."""


_submitter: ContextVar[Submitter | None] = ContextVar("fleet_submitter", default=None)


def submitter() -> Submitter | None:
    return _submitter.get()


def intercept(submitter: Submitter | None) -> object:
    """Make `submitter` take the submits of this context (None: stop); a token for
    `release`."""
    return _submitter.set(submitter)


def release(token: object) -> None:
    _submitter.reset(token)  # type: ignore[arg-type]  # token from intercept()
