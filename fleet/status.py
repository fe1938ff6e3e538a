"""The invocation state machine, as data.

Job: name every status an invocation can be in and every change allowed between them.
Contract: `TRANSITIONS` is the single source of truth (plus `REDRIVES`, the operator's
re-drive of a failed dead letter, allowed only when asked for by name). `check(src, dst)` raises
`InvalidTransitionError` for any pair not in it; every backend calls it before writing
and encodes the same pair as the compare-and-set filter of its update, so a change is
either valid and atomic or refused. Statuses in `OWNED` carry an owner (a worker
process id); leaving them requires naming that owner, so a late duplicate cannot move an
invocation someone else now holds. Pure: no I/O, no clocks.
"""

from __future__ import annotations

from enum import StrEnum

from fleet._value_class import value_class
from fleet.errors import InvalidTransitionError


class Status(StrEnum):
    """Where an invocation is in its life."""

    PENDING = "PENDING"
    """Registered; its message is queued (or being queued) on the broker."""
    SCHEDULED = "SCHEDULED"
    """Held in the state store until a due time; no message exists yet."""
    RUNNING = "RUNNING"
    """Claimed by an owner that is executing it."""
    PAUSED = "PAUSED"
    """Its owner waits on other invocations and has given its slot away."""
    RETRY = "RETRY"
    """An attempt failed; held until the due time of the next attempt."""
    BLOCKED = "BLOCKED"
    """Held back by a concurrency limit until its key is free."""
    SUCCESS = "SUCCESS"
    """Finished with a result. Final."""
    FAILED = "FAILED"
    """Finished with an error. Final."""
    CANCELLED = "CANCELLED"
    """Stopped on request before finishing. Final."""

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def owned(self) -> bool:
        return self in OWNED


FINAL = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELLED})
OWNED = frozenset({Status.RUNNING, Status.PAUSED})
HELD = frozenset({Status.SCHEDULED, Status.RETRY, Status.BLOCKED})
"""Statuses released by the due-time service (the leader) rather than by a message."""
CLAIMABLE = frozenset({Status.PENDING})
"""Statuses from which a worker may claim an invocation it received as a message."""

_S = Status
TRANSITIONS: dict[Status, frozenset[Status]] = {
    # Claimed, cancelled, parked by a limit, failed without running (poison message,
    # publish never confirmed), or published again by recovery (PENDING -> PENDING).
    _S.PENDING: frozenset({_S.RUNNING, _S.CANCELLED, _S.BLOCKED, _S.FAILED, _S.PENDING}),
    _S.SCHEDULED: frozenset({_S.PENDING, _S.CANCELLED}),
    # Finished, paused to wait, or requeued (owner died, shutdown, hard limit retry).
    _S.RUNNING: frozenset({_S.SUCCESS, _S.FAILED, _S.RETRY, _S.PAUSED, _S.CANCELLED, _S.PENDING}),
    # Resumed, requeued when its owner died, stopped, or failed while waiting.
    _S.PAUSED: frozenset({_S.RUNNING, _S.PENDING, _S.CANCELLED, _S.FAILED}),
    _S.RETRY: frozenset({_S.PENDING, _S.CANCELLED}),
    _S.BLOCKED: frozenset({_S.PENDING, _S.CANCELLED}),
    _S.SUCCESS: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


REDRIVES: dict[Status, frozenset[Status]] = {
    _S.FAILED: frozenset({_S.PENDING}),
    _S.CANCELLED: frozenset({_S.PENDING}),
}
"""Operator actions beyond `TRANSITIONS`, allowed only to a `Change` marked `redrive`:
`fleet deadletters requeue` makes a dead-lettered invocation that was failed (unknown
task, undecodable, poison) runnable again, and `fleet invocations retry` a failed or
cancelled one; each is recorded in the invocation's history."""


def allowed(src: Status, dst: Status) -> bool:
    """Tell whether an invocation in `src` may move to `dst`."""
    return dst in TRANSITIONS[src]


def check(src: Status, dst: Status, *, redrive: bool = False) -> None:
    """Raise `InvalidTransitionError` unless `src -> dst` is allowed (with `redrive`,
    the operator's `REDRIVES` as well)."""
    if redrive and dst in REDRIVES.get(src, ()):
        return
    if dst not in TRANSITIONS[src]:
        targets = ", ".join(sorted(TRANSITIONS[src])) or "nothing (final)"
        raise InvalidTransitionError(
            f"status change {src.value} -> {dst.value} is not allowed; "
            f"from {src.value} an invocation may go to {targets}"
        )


def sources(dst: Status) -> frozenset[Status]:
    """Every status from which `dst` can be reached in one step."""
    return frozenset(src for src, dsts in TRANSITIONS.items() if dst in dsts)


@value_class
class HistoryEntry:
    """One recorded status change of an invocation."""

    status: Status
    at: float
    """Seconds since the epoch, as seen by the writer."""
    owner: str = ""
    """The runner that made the change, or '' for producers and services."""
    note: str = ""
    """Why, for changes that are not the obvious ones (recovered, retry 2/5, ...)."""
