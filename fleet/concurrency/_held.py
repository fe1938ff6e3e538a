"""What the invocations held by concurrency control wait for, per task (`fleet status`).

Job: count the BLOCKED invocations of each task by why they wait: blocked by a running
limit (waiting for a permit) or deferred by a rate limit (waiting for budget), read from
the note of the change that parked them (`ConcurrencyExtension` writes the reasons).

Contract: reads at most `limit` BLOCKED records (one query); a BLOCKED invocation held
by another extension (a note of neither kind) counts as `other`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.state import Query, StateStore
from fleet.status import Status

RUNNING_REASON = "running_concurrency"
"""How the note of a running-limit hold starts."""
RATE_REASON = "rate_limit"
"""How the note of a rate-limit deferral starts."""


@dataclass(slots=True)
class Held:
    """BLOCKED invocations of one task, by reason."""

    blocked: int = 0
    """Waiting for a running permit."""
    deferred: int = 0
    """Waiting for rate budget."""
    other: int = 0


def held_by_task(state: StateStore, limit: int = 10_000) -> dict[str, Held]:
    """BLOCKED invocations per task, by reason (see the module docstring)."""
    found: dict[str, Held] = {}
    for record in state.find(Query(statuses=(Status.BLOCKED,), limit=limit)):
        held = found.setdefault(record.task, Held())
        note = record.history[-1].note if record.history else ""
        if note.startswith(RUNNING_REASON):
            held.blocked += 1
        elif note.startswith(RATE_REASON):
            held.deferred += 1
        else:
            held.other += 1
    return found
