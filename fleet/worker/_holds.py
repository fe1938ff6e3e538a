"""Claims held back by the extensions (`before_claim`), for the worker's intake.

Job: build the `ClaimBatch` of a round of deliveries, ask the extensions which to hold,
turn each `Hold` into the compare-and-set that parks its invocation BLOCKED, and, once
parked, arrange the release of short holds at their due time.

Contract:
- `ask` is called only when some extension overrides `before_claim` (the intake checks
  `dispatcher.before_claim_hooks` first). It returns the holds by invocation id; an
  `ExtensionError` propagates (the intake runs none of the claims).
- `park(hold, by)`: PENDING -> BLOCKED with `due = hold.until` (None: only an extension
  wakes it, e.g. when a running permit is handed over) and the note `hold_note(hold)`
  (its reason, and its memo, which the release carries back in the envelope). It is a
  compare-and-set like a claim: a duplicate delivery, or a message whose record is not
  written yet, loses it and is sorted out as a lost claim would be.
- `follow_up(app, parked)`: holds due before the leader's next tick are released at
  their due time by this process (`fleet._followup`); the leader releases the others.
"""

from __future__ import annotations

import logging
import time
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
) -> dict[str, Hold]:
    """The extensions' holds on these deliveries' invocations, by id."""
    now = time.time()
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
    for due, ids in by_due.items():
        _followup.hold(app, ids, due)
