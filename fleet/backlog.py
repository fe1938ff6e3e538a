"""The real backlog of each queue: what is waiting for a worker, wherever it waits.

Job: count, per queue, the work that a worker could start now, for autoscaling (KEDA on
the `fleet_queue_backlog{queue}` metric) and for `fleet status --json`. A queue's
ready count alone is wrong both ways: fleet acks a message when it claims the
invocation, and retries, scheduled and blocked invocations wait in the state store,
not in the queue.

Contract:
- `backlogs(app, now)` returns one `Backlog` per queue (the queues of the app's queue
  definitions, plus any queue the state store names): `ready` is what the broker holds
  ready (the queue and its urgent lane), `due` the invocations the state store holds
  for that queue whose time has come and that no message carries yet: SCHEDULED,
  RETRY and BLOCKED ones whose due time has passed (the leader releases them at its
  next tick), and PENDING ones past their publish deadline (a publish that was never
  confirmed; recovery publishes them again). `total` = ready + due.
- `backlog(app)` is `{queue: total}`, the figure the metrics exporter publishes.
- Reads cost one `Broker.stats` per queue and one state-store query (at most
  `limit` records; a larger due backlog is counted as `limit`, which is plenty to
  scale on). A broker or store error propagates: a scaler must not read "0" from an
  outage.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from fleet.state import Query
from fleet.status import HELD, Status

if TYPE_CHECKING:
    from fleet.app import Fleet

__all__ = ["Backlog", "backlog", "backlogs"]

DUE_LIMIT = 100_000
"""Most due invocations read from the state store per call."""


@dataclass(frozen=True, slots=True)
class Backlog:
    """The work waiting for one queue's workers."""

    queue: str
    ready: int
    """Messages ready in the broker (the queue and its urgent lane)."""
    due: int
    """Invocations whose time has come that no message carries yet (state store)."""

    @property
    def total(self) -> int:
        return self.ready + self.due

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "total": self.total}


def _due_by_queue(app: Fleet, now: float, limit: int) -> dict[str, int]:
    statuses = (*sorted(HELD), Status.PENDING)
    found: dict[str, int] = {}
    query = Query(statuses=statuses, due_before=now, limit=limit)
    for record in app.runtime().state.find(query):
        found[record.queue] = found.get(record.queue, 0) + 1
    return found


def backlogs(app: Fleet, now: float | None = None, limit: int = DUE_LIMIT) -> dict[str, Backlog]:
    """Per queue: ready in the broker, due in the state store (see the module doc)."""
    now = time.time() if now is None else now
    due = _due_by_queue(app, now, limit)
    broker = app.runtime().broker
    names = [*app.queues.names(), *sorted(set(due) - set(app.queues.names()))]
    found = {}
    for name in names:
        ready = max(0, broker.stats(name).ready)
        found[name] = Backlog(name, ready, due.get(name, 0))
    return found


def backlog(app: Fleet) -> dict[str, int]:
    """`{queue: ready + due}`: the figure `fleet_queue_backlog{queue}` exports."""
    return {name: item.total for name, item in backlogs(app).items()}
