"""Claims held back by the extensions (`before_claim`), for the worker's intake.

Job: build the `ClaimBatch` of a round of deliveries, ask the extensions which to hold,
turn each `Hold` into the compare-and-set that parks its invocation BLOCKED, and, once
parked, arrange the release of short holds at their due time.

Contract:
- `ask` is called only when some extension overrides `before_claim` (the intake checks
  `dispatcher.before_claim_hooks` first). It returns the holds by invocation id; an
  `ExtensionError` propagates (the intake runs none of the claims). The claims are then
  applied at the `now` the extensions decided at (`ClaimBatch.now`): the RUNNING time
  in the history is the time a run was admitted (a rate limit counts those starts).
- `park(hold, by)`: PENDING -> BLOCKED with `due = hold.until` (None: only an extension
  wakes it, e.g. when a running permit is handed over) and the note `hold_note(hold)`
  (its reason, and its memo, which the release carries back in the envelope). It is a
  compare-and-set like a claim: a duplicate delivery, or a message whose record is not
  written yet, loses it and is sorted out as a lost claim would be.
- `follow_up(app, parked)`: holds with a due time are released at that time by this
  process (`fleet._followup`: a rate limit's deferral must not wait for the leader's
  next tick); the leader's release of due holds is the fallback when this process is
  gone (both are compare-and-sets: one wins).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleet import _followup
from fleet.extensions import Claim, ClaimBatch, Dispatcher, Hold, hold_note
from fleet.state import Change
from fleet.status import CLAIMABLE, Status

if TYPE_CHECKING:
    from fleet._envelope import Envelope
    from fleet.app import Fleet
    from fleet.broker import Delivery
    from fleet.task import Task

log = logging.getLogger(__name__)


def ask(
    dispatcher: Dispatcher,
    runner: str,
    runnable: Sequence[tuple[Delivery, Envelope, Task[Any, Any]]],
    now: float,
) -> dict[str, Hold]:
    """The extensions' holds on these deliveries' invocations (claimed at `now`), by id."""
    claims = tuple(
        Claim(env.id, task.name, env.args, env.codec, env.created, env.memo)
        for _, env, task in runnable
    )
    asked = {c.invocation_id for c in claims}
    holds = dispatcher.before_claim(ClaimBatch(claims, runner, now))
    return {h.invocation_id: h for h in holds if h.invocation_id in asked}


def park(hold: Hold, by: str) -> Change:
    """The change that parks `hold`'s invocation BLOCKED."""
    return Change(
        hold.invocation_id, Status.BLOCKED, CLAIMABLE, by=by, due=hold.until, note=hold_note(hold)
    )


def follow_up(app: Fleet, parked: Sequence[Hold]) -> None:
    """Release short holds at their due time (see the module docstring); log them."""
    by_due: dict[float, list[str]] = defaultdict(list)
    for hold in parked:
        log.debug("held: %s", hold.reason, extra={"invocation_id": hold.invocation_id})
        if hold.until is not None:
            by_due[hold.until].append(hold.invocation_id)
    follow = _followup.of(app) if by_due else None
    for due, ids in by_due.items():
        assert follow is not None
        follow.release_at(ids, due)
