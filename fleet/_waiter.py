"""Result delivery inside one process: push first, the state store as a fallback.

Job: let any thread of this process block until invocations finish, without polling on
the hot path. The notifications that workers send to this process's address after
committing an outcome are received by whoever drives the process's listener: a thread
that waits for results (no hand-off between threads when its result comes), or else
the waiter's own listener thread, which wakes the threads waiting on them.

Contract:
- `watch(id)` before publishing an invocation submitted here: its outcome is kept even
  if it arrives before anyone waits, until `forget(id)`.
- `wait(ids, timeout)` returns the outcome of each id once final, or raises
  `TimeoutError`. Notifications are best effort, so while anyone waits, whoever drives
  the listener also reads from the state store the outcome of each id still missing
  after `poll` seconds of waiting, and again every `poll` seconds. Ids waited on for
  less are not read (their notifications are on their way, and reading a large batch
  at once would stall the notifications queued meanwhile); reads go in chunks, with
  the notifications drained between them. An idle process never wakes.
- Driving: one thread at a time calls the listener's `receive`. While a thread that
  runs no task (a producer's caller) waits, the listener thread parks and such a
  waiting thread drives instead, one at a time, handing over when its own results are
  in; outcomes learned otherwise meanwhile (`deliver`) wake it. The listener thread
  takes the listener back `LINGER` seconds after the last such wait ended, so a caller
  that calls and waits in a loop drives every wait without waking it (two wake-ups of
  that thread per call otherwise: to take over, then to park again). Task threads of a
  worker (a paused invocation) never drive, since a cancel request the listener hands
  to the worker may interrupt exactly such a thread: while only they wait, the
  listener thread drives as before.
- While nobody waits, notifications that can wait without loss (`Listener.patient`,
  RabbitMQ) are taken in batches: after some arrived, the listener thread pauses
  `LINGER` seconds (cut short when a thread starts waiting), so a process that submits
  many calls is not woken once per result while it submits.
- `on_outcomes`, when set, is told the ids of every final outcome this process learns
  (`fleet._followup` then skips clearing their recovery deadlines).
- Cancel requests addressed to this process go to the handler set by the worker (a
  pause can delay one by up to `LINGER` seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from fleet import _context
from fleet._envelope import Outcome, unpack_notes
from fleet.broker import Broker
from fleet.state import InvocationRecord, StateStore

log = logging.getLogger(__name__)
FALLBACK_CHUNK = 250
"""Ids read per state-store query of the fallback, notifications drained between."""
LINGER = 0.004
"""Seconds the listener pauses after notifications that nobody waits for yet, and that
the parked listener thread leaves the listener to the next waiting caller. Short
enough that the datagrams a same-host RabbitMQ listener's doorbell queues meanwhile
(`fleet.broker._amqp_local`; Linux queues 10 by default) rarely overflow to RabbitMQ
at W1's rate: 1-4% did at 4 ms, 24-39% at 20 ms."""


def outcome_of(record: InvocationRecord) -> Outcome | None:
    """The outcome of a record, or None while it is not final."""
    if not record.status.final:
        return None
    return Outcome(record.id, record.status, record.result, record.error)


class Waiter:
    """Per-process hub that wakes threads when the invocations they wait on finish."""

    def __init__(self, broker: Broker, state: StateStore, poll: float = 1.0) -> None:
        self._state = state
        self._poll = poll
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        """Waiting threads wait on it (an outcome arrived, the listener is free)."""
        self._park = threading.Condition(lock)
        """The listener thread waits on it while waiting threads drive the listener."""
        self._outcomes: dict[str, Outcome] = {}
        self._watched: set[str] = set()
        self._waiting: Counter[str] = Counter()
        self._since: dict[str, float] = {}
        """When each id in `_waiting` began to be waited on (monotonic)."""
        self._closed = False
        self._linger = threading.Event()
        """Set to end the listener's pause between notifications nobody waits for."""
        self._asleep = False
        """True while the listener thread may be blocked without a timeout (nobody waited)."""
        self._parked = False
        """True while the listener thread leaves the listener to waiting threads."""
        self._left = float("-inf")
        """When the last driving thread stopped waiting (monotonic)."""
        self._untimed = False
        """True while the parked listener thread waits with no timeout (see `_run`)."""
        self._drivers = 0
        """Waiting threads that may drive the listener (not task threads, which a cancel
        request handled by the listener could interrupt)."""
        self._driver: int | None = None
        """The waiting thread now in the listener's `receive`, if any."""
        self._next_check = 0.0
        """When the fallback reads the state store next (monotonic)."""
        self.on_cancel: Callable[[str], None] | None = None
        self.on_outcomes: Callable[[Sequence[str]], None] | None = None
        """Told the ids of every final outcome this process learns (`fleet._followup`)."""
        self._listener = broker.listener()
        self.address = self._listener.address
        self._thread = threading.Thread(target=self._run, name="fleet-waiter", daemon=True)
        self._thread.start()

    def watch(self, ids: Iterable[str]) -> None:
        with self._cond:
            self._watched.update(ids)

    def forget(self, invocation_id: str) -> None:
        with self._cond:
            self._watched.discard(invocation_id)
            if not self._waiting[invocation_id]:
                self._outcomes.pop(invocation_id, None)

    def peek(self, invocation_id: str) -> Outcome | None:
        with self._cond:
            return self._outcomes.get(invocation_id)

    def wait(self, ids: Sequence[str], timeout: float | None = None) -> dict[str, Outcome]:
        """Block until every id has an outcome; raise TimeoutError after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        drives = _context.current() is None
        with self._cond:
            self._enter(ids, drives)
            try:
                while True:
                    missing = [i for i in ids if i not in self._outcomes]
                    if not missing:
                        return {i: self._outcomes[i] for i in ids}
                    if self._closed:
                        raise RuntimeError("fleet waiter is closed")
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(
                            f"{len(missing)} of {len(ids)} invocation(s) not finished "
                            f"after {timeout}s: {', '.join(missing[:5])}"
                        )
                    self._block(left, drives)
            finally:
                self._drivers -= drives
                self._waiting.subtract(ids)
                for i in ids:
                    if self._waiting[i] <= 0:
                        del self._waiting[i]
                        self._since.pop(i, None)
                        if i not in self._watched:
                            self._outcomes.pop(i, None)
                if not self._drivers:
                    self._handed_back()

    def wait_any(self, ids: Sequence[str], timeout: float | None = None) -> list[Outcome]:
        """Block until at least one id has an outcome; return those that have one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        drives = _context.current() is None
        with self._cond:
            self._enter(ids, drives)
            try:
                while True:
                    done = [self._outcomes[i] for i in ids if i in self._outcomes]
                    if done or not ids:
                        return done
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"none of {len(ids)} invocation(s) finished")
                    self._block(left, drives)
            finally:
                self._drivers -= drives
                self._waiting.subtract(ids)
                self._waiting = +self._waiting
                for i in ids:
                    if i not in self._waiting:
                        self._since.pop(i, None)
                if not self._drivers:
                    self._handed_back()

    def _handed_back(self) -> None:
        """The last thread that may drive stops waiting: the listener thread takes over
        `LINGER` seconds later unless another comes (`_run`)."""
        self._left = time.monotonic()
        if self._untimed:  # else it wakes by itself once `LINGER` has passed
            self._park.notify()

    def _block(self, left: float | None, drives: bool) -> None:
        """Wait for news, with the lock held: drive the listener when it is free (the
        listener thread parks while a thread that may drive waits), else wait."""
        if not (drives and self._parked and self._driver is None):
            self._cond.wait(left)
            return
        self._driver = threading.get_ident()
        self._cond.release()
        try:
            timeout = max(0.0, min(self._poll, self._next_check - time.monotonic()))
            if left is not None:
                timeout = min(timeout, left)
            try:
                payloads = self._listener.receive(timeout)
            except Exception:
                log.exception("fleet waiter: notification listener failed; retrying")
                payloads = []
                time.sleep(min(self._poll, left if left is not None else self._poll))
            self._handle(payloads)
            if time.monotonic() >= self._next_check:
                self._next_check = self._fallback()
        finally:
            self._cond.acquire()
            self._driver = None
            if self._drivers > 1:
                self._cond.notify_all()  # another waiting thread may drive next

    def _enter(self, ids: Sequence[str], drives: bool) -> None:
        now = time.monotonic()
        if not self._waiting:
            self._next_check = now + self._poll  # nothing can be due for the fallback
        self._drivers += drives
        self._waiting.update(ids)
        for i in ids:
            self._since.setdefault(i, now)
        if self._asleep or (drives and not self._parked):
            # Get the listener thread out of `receive`: it parks (a thread that may
            # drive waits) or starts the fallback timer (a busy one keeps time already).
            self._asleep = False
            self._linger.set()
            self._listener.wakeup()

    def deliver(self, outcomes: Iterable[Outcome]) -> None:
        """Record outcomes learned in this process (e.g. committed by its own worker)."""
        with self._cond:
            self._store(outcomes)

    def _store(self, outcomes: Iterable[Outcome]) -> None:
        outcomes = list(outcomes)
        if self.on_outcomes is not None and outcomes:
            self.on_outcomes([o.id for o in outcomes if o.status.final])
        stored = False
        for outcome in outcomes:
            if outcome.id in self._watched or outcome.id in self._waiting:
                self._outcomes[outcome.id] = outcome
                stored = True
        if stored:
            self._cond.notify_all()
            if self._driver is not None and self._driver != threading.get_ident():
                self._listener.wakeup()  # the driver is in `receive`: let it see these

    def _run(self) -> None:
        while not self._closed:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    recent = now - self._left < LINGER  # another wait may follow at once
                    if not self._drivers and not recent:
                        break
                    if not self._parked:
                        self._parked = True
                        self._cond.notify_all()  # a waiting thread may drive now
                    self._untimed = not recent
                    self._park.wait(self._left + LINGER - now if recent else None)
                    self._untimed = False
                self._parked = False
                busy = bool(self._waiting)
                self._asleep = not busy
            now = time.monotonic()
            timeout = max(0.0, min(self._poll, self._next_check - now)) if busy else None
            try:
                payloads = self._listener.receive(timeout)
            except Exception:
                if self._closed:
                    return
                log.exception("fleet waiter: notification listener failed; retrying")
                time.sleep(self._poll)
                continue
            self._handle(payloads)
            if busy and time.monotonic() >= self._next_check:
                self._next_check = self._fallback()
            elif payloads and not busy and self._listener.patient:
                # Nobody waits: let notifications gather and take them in one go (a
                # process submitting many calls pays one wake-up per batch, not one
                # per result). A thread that starts waiting cuts this short.
                self._linger.wait(LINGER)
                self._linger.clear()

    def _handle(self, payloads: list[bytes]) -> None:
        outcomes = []
        for payload in payloads:
            for note in unpack_notes(payload):
                if isinstance(note, Outcome):
                    outcomes.append(note)
                elif self.on_cancel is not None:
                    self.on_cancel(note)
        if outcomes:
            with self._cond:
                self._store(outcomes)

    def _fallback(self) -> float:
        """Read the outcomes of ids waited on for `poll` seconds or more; return when
        the next one comes due."""
        now = time.monotonic()
        cutoff = now - self._poll
        next_check = now + self._poll
        missing = []
        with self._cond:
            for i in self._waiting:
                if i in self._outcomes:
                    continue
                since = self._since.get(i, cutoff)
                if since <= cutoff:
                    missing.append(i)
                else:
                    next_check = min(next_check, since + self._poll)
        for start in range(0, len(missing), FALLBACK_CHUNK):
            try:
                records = self._state.get(missing[start : start + FALLBACK_CHUNK])
            except Exception:
                log.warning("fleet waiter: state store unavailable for result check", exc_info=True)
                break
            found = [o for o in map(outcome_of, records) if o is not None]
            if found:
                with self._cond:
                    self._store(found)
            if start + FALLBACK_CHUNK < len(missing):
                self._handle(self._listener.receive(0))
        return next_check

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._park.notify_all()
        self._linger.set()
        self._listener.wakeup()
        self._thread.join(timeout=5)
        self._listener.close()
