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
  confirmed; recovery publishes them again).
- Stale copies are counted out: a ready message can only start work for a PENDING
  invocation of its queue, so ready messages beyond the queue's PENDING invocations
  are copies of invocations already claimed or finished (a second publish, a copy a
  crash left behind), which a worker claims, fails and drops. `stale` = ready - PENDING
  when that is positive; `total` = ready - stale + due. Counting PENDING reads at most
  `min(ready, COUNT_OUT_LIMIT) + 1` records; when there are more PENDING than that,
  nothing is counted out (a few copies do not matter beside such a backlog).
- `backlog(app)` is `{queue: total}`, the figure the metrics exporter publishes.
- Reads cost one `Broker.stats` per queue and up to two state-store queries (the due
  one reads at most `limit` records; a larger due backlog is counted as `limit`, which
  is plenty to scale on). A broker or store error propagates: a scaler must not read
  "0" from an outage.
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
COUNT_OUT_LIMIT = 5_000
"""Most PENDING invocations read to count stale copies out."""


@dataclass(frozen=True, slots=True)
class Backlog:
    """The work waiting for one queue's workers."""

    queue: str
    ready: int
    """Messages ready in the broker (the queue and its urgent lane)."""
    due: int
    """Invocations whose time has come that no message carries yet (state store)."""
    stale: int = 0
    """Ready messages beyond the queue's PENDING invocations (copies), counted out."""

    @property
    def total(self) -> int:
        return self.ready - self.stale + self.due

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "total": self.total}


def _due_by_queue(app: Fleet, now: float, limit: int) -> dict[str, int]:
    statuses = (*sorted(HELD), Status.PENDING)
    found: dict[str, int] = {}
    query = Query(statuses=statuses, due_before=now, limit=limit)
    for record in app.runtime().state.find(query):
        found[record.queue] = found.get(record.queue, 0) + 1
    return found


def _pending_by_queue(app: Fleet, at_most: int) -> dict[str, int] | None:
    """PENDING invocations per queue, or None when there are more than `at_most`."""
    records = app.runtime().state.find(Query(statuses=(Status.PENDING,), limit=at_most + 1))
    if len(records) > at_most:
        return None
    found: dict[str, int] = {}
    for record in records:
        found[record.queue] = found.get(record.queue, 0) + 1
    return found


def backlogs(app: Fleet, now: float | None = None, limit: int = DUE_LIMIT) -> dict[str, Backlog]:
    """Per queue: ready in the broker, stale copies counted out, due in the state store
    (see the module doc)."""
    now = time.time() if now is None else now
    due = _due_by_queue(app, now, limit)
    broker = app.runtime().broker
    names = [*app.queues.names(), *sorted(set(due) - set(app.queues.names()))]
    ready = {name: max(0, broker.stats(name).ready) for name in names}
    pending: dict[str, int] | None = {}
    if any(ready.values()):
        pending = _pending_by_queue(app, min(sum(ready.values()), COUNT_OUT_LIMIT))
    found = {}
    for name in names:
        stale = 0 if pending is None else max(0, ready[name] - pending.get(name, 0))
        found[name] = Backlog(name, ready[name], due.get(name, 0), stale)
    return found


def backlog(app: Fleet) -> dict[str, int]:
    """`{queue: ready + due}`: the figure `fleet_queue_backlog{queue}` exports."""
    return {name: item.total for name, item in backlogs(app).items()}
