"""Messages that arrive before their invocation record.

Job: keep track of deliveries whose claim found no record yet, and say when to try
each again. A producer on a broker that sends at once (RabbitMQ) writes the record
while the broker confirms the message (see `fleet._submit`), so a fast worker can receive
the message a moment before the record is there.

Contract: `add` holds a delivery (unacked) and schedules its next claim after
`FIRST_DELAY` seconds, the delay doubling up to `MAX_DELAY`; `due(now, n)` hands out at
most `n` of those whose time has come (the dispatcher takes a slot for each before it
claims them again), and `again` puts one back until its deadline, `RECORD_GRACE`
seconds after it first arrived. A held delivery reserves no slot: for its first
`PATIENCE` seconds it only holds back new receives (`blocking`), so that a burst of
early arrivals waits for its records instead of pulling more messages, while a flood of
messages that never get a record cannot starve real work for longer than that. At most
`limit` deliveries are held: holding one more gives up on the oldest. `sort_out`
decides, after a batch of claims, which lost claims were duplicate deliveries (their
record exists) and which wait on, and returns those given up on (grace over and still
no record, or pushed out by the limit) with the reason: the worker dead-letters them
(their producer failed or died before the record was written; a record written later
is published again by its producer or by recovery, see `fleet._submit`). `wait(now)` is
the time until the next one is due or stops blocking (None when none is held).
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
PATIENCE = 0.1
"""Seconds an early arrival holds back new receives (longer than a record write takes)."""


@dataclass(slots=True)
class Early:
    """A delivery waiting for its invocation record."""

    delivery: Delivery
    envelope: Envelope
    task: Task[Any, Any]
    deadline: float
    next_try: float
    delay: float = FIRST_DELAY
    arrived: float = 0.0

    def expired(self, now: float) -> bool:
        return now >= self.deadline


class EarlyArrivals:
    """The early deliveries of one worker process (used by its dispatcher thread only).

    Args:
        grace: seconds a delivery waits for its record.
        limit: most deliveries held at once (0: no limit).
    """

    def __init__(self, grace: float = RECORD_GRACE, limit: int = 0) -> None:
        self.grace = grace
        self.limit = limit
        self._held: list[Early] = []

    def __len__(self) -> int:
        return len(self._held)

    def add(
        self, delivery: Delivery, envelope: Envelope, task: Task[Any, Any], now: float
    ) -> list[Early]:
        """Hold a delivery; return those pushed out by the limit (the oldest)."""
        early = Early(delivery, envelope, task, now + self.grace, now + FIRST_DELAY, arrived=now)
        self._held.append(early)
        if not self.limit or len(self._held) <= self.limit:
            return []
        self._held.sort(key=lambda e: e.arrived)
        out, self._held = self._held[: -self.limit], self._held[-self.limit :]
        return out

    def again(self, early: Early, now: float) -> None:
        early.delay = min(early.delay * 2, MAX_DELAY)
        early.next_try = min(now + early.delay, early.deadline)
        self._held.append(early)

    def due(self, now: float, most: int) -> list[Early]:
        """Take out at most `most` of the deliveries due for another claim."""
        ready = sorted((e for e in self._held if e.next_try <= now), key=lambda e: e.next_try)
        ready = ready[: max(most, 0)]
        if ready:
            taken = {id(e) for e in ready}
            self._held = [e for e in self._held if id(e) not in taken]
        return ready

    def blocking(self, now: float) -> int:
        """How many held deliveries still hold back new receives (see the docstring)."""
        return sum(1 for e in self._held if now < e.arrived + PATIENCE)

    def wait(self, now: float) -> float | None:
        if not self._held:
            return None
        times = [e.next_try for e in self._held]
        times += [e.arrived + PATIENCE for e in self._held if now < e.arrived + PATIENCE]
        return max(0.0, min(times) - now)

    def sort_out(
        self,
        state: StateStore,
        runnable: Sequence[tuple[Delivery, Envelope, Task[Any, Any]]],
        won: Sequence[bool],
        retried: Sequence[Early] | None,
    ) -> tuple[set[int], list[tuple[Early, str]]]:
        """After a batch of claims: hold (again) the lost ones whose record does not
        exist, or appeared claimable since (claimed again at once). Returns the positions
        of the lost claims not to ack (held, or given up on), and the deliveries given
        up on with the reason; the other lost claims are duplicate deliveries."""
        lost = [i for i, ok in enumerate(won) if not ok]
        try:
            found = {r.id: r.status for r in state.get([runnable[i][1].id for i in lost])}
        except Exception:  # hold them all: a record that exists is found next time
            log.warning("state store failed reading records; claims tried again", exc_info=True)
            found = {}
        now = time.monotonic()
        held: set[int] = set()
        dropped: list[tuple[Early, str]] = []
        for i in lost:
            delivery, envelope, task = runnable[i]
            status = found.get(envelope.id)
            if status is not None and status not in CLAIMABLE:
                continue  # claimed or finished already: a duplicate delivery
            held.add(i)  # no record yet, or one written since the claim: claim again
            if retried is None:
                pushed = self.add(delivery, envelope, task, now)
                dropped += [(e, self._pushed_out(e, now)) for e in pushed]
            elif retried[i].expired(now) and status is None:
                reason = (
                    f"no invocation record {envelope.id} after {self.grace:g}s "
                    "(its producer failed or died before writing it)"
                )
                dropped.append((retried[i], reason))
                continue
            else:
                self.again(retried[i], now)
            if status is not None:
                self._held[-1].next_try = now
        return held, dropped

    def _pushed_out(self, early: Early, now: float) -> str:
        return (
            f"no invocation record {early.envelope.id} after {now - early.arrived:.3g}s, "
            f"while {self.limit} newer messages without a record were held (at most "
            f"{self.limit} are; its producer failed or died before writing it, or a flood "
            "of messages without records)"
        )

    def clear(self) -> list[Early]:
        held, self._held = self._held, []
        return held
