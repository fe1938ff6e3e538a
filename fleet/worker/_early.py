"""Messages that arrive before their invocation record.

Job: keep track of deliveries whose claim found no record yet, and say when to try
each again. A producer on a broker that sends at once (RabbitMQ) writes the record
while the broker confirms the message (see `fleet.app`), so a fast worker can receive
the message a moment before the record is there.

Contract: `add` holds a delivery (unacked; its worker slot stays reserved) and
schedules its next claim after `FIRST_DELAY` seconds, the delay doubling up to
`MAX_DELAY`; `due(now)` hands out those whose time has come, and `again` puts one back
until its deadline, `RECORD_GRACE` seconds after it first arrived; `expired` tells the
dispatcher to give up on it (the worker then dead-letters the message: its producer
failed or died before the record was written). `wait(now)` is the time until the next
one is due (None when none is held). `sort_out` decides, after a batch of claims,
which lost claims were duplicate deliveries (their record exists) and which wait on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleet._envelope import RECORD_GRACE, Envelope
from fleet.broker import Delivery
from fleet.state import StateStore
from fleet.status import CLAIMABLE

if TYPE_CHECKING:
    from fleet.task import Task

log = logging.getLogger(__name__)
FIRST_DELAY = 0.001
MAX_DELAY = 0.1


@dataclass(slots=True)
class Early:
    """A delivery waiting for its invocation record."""

    delivery: Delivery
    envelope: Envelope
    task: Task[Any, Any]
    deadline: float
    next_try: float
    delay: float = FIRST_DELAY

    def expired(self, now: float) -> bool:
        return now >= self.deadline


class EarlyArrivals:
    """The early deliveries of one worker process (used by its dispatcher thread only)."""

    def __init__(self, grace: float = RECORD_GRACE) -> None:
        self.grace = grace
        self._held: list[Early] = []

    def __len__(self) -> int:
        return len(self._held)

    def add(self, delivery: Delivery, envelope: Envelope, task: Task[Any, Any], now: float) -> None:
        self._held.append(Early(delivery, envelope, task, now + self.grace, now + FIRST_DELAY))

    def again(self, early: Early, now: float) -> None:
        early.delay = min(early.delay * 2, MAX_DELAY)
        early.next_try = min(now + early.delay, early.deadline)
        self._held.append(early)

    def due(self, now: float) -> list[Early]:
        ready = [e for e in self._held if e.next_try <= now]
        if ready:
            self._held = [e for e in self._held if e.next_try > now]
        return ready

    def wait(self, now: float) -> float | None:
        if not self._held:
            return None
        return max(0.0, min(e.next_try for e in self._held) - now)

    def sort_out(
        self,
        state: StateStore,
        runnable: Sequence[tuple[Delivery, Envelope, Task[Any, Any]]],
        won: Sequence[bool],
        retried: Sequence[Early] | None,
    ) -> tuple[set[int], list[Early]]:
        """After a batch of claims: hold (again) the lost ones whose record does not
        exist, or appeared claimable since (claimed again at once). Returns their
        positions (expired ones included) and the expired ones; the other lost claims
        are duplicate deliveries."""
        lost = [i for i, ok in enumerate(won) if not ok]
        try:
            found = {r.id: r.status for r in state.get([runnable[i][1].id for i in lost])}
        except Exception:  # hold them all: a record that exists is found next time
            log.warning("state store failed reading records; claims tried again", exc_info=True)
            found = {}
        now = time.monotonic()
        held: set[int] = set()
        expired: list[Early] = []
        for i in lost:
            delivery, envelope, task = runnable[i]
            status = found.get(envelope.id)
            if status is not None and status not in CLAIMABLE:
                continue  # claimed or finished already: a duplicate delivery
            held.add(i)  # no record yet, or one written since the claim: claim again
            if retried is None:
                self.add(delivery, envelope, task, now)
            elif retried[i].expired(now) and status is None:
                expired.append(retried[i])
            else:
                self.again(retried[i], now)
            if status is not None:
                self._held[-1].next_try = now
        return held, expired

    def clear(self) -> list[Early]:
        held, self._held = self._held, []
        return held
