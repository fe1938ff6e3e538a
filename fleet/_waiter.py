"""Result delivery inside one process: push first, the state store as a fallback.

Job: let any thread of this process block until invocations finish, without polling on
the hot path. One listener thread per process receives the notifications that workers
send to this process's address after committing an outcome, and wakes the threads
waiting on them.

Contract:
- `watch(id)` before publishing an invocation submitted here: its outcome is kept even
  if it arrives before anyone waits, until `forget(id)`.
- `wait(ids, timeout)` returns the outcome of each id once final, or raises
  `TimeoutError`. Notifications are best effort, so while anyone waits the listener
  thread also reads from the state store the outcome of each id still missing after
  `poll` seconds of waiting, and again every `poll` seconds. Ids waited on for less are
  not read (their notifications are on their way, and reading a large batch at once
  would stall the notifications queued meanwhile); reads go in chunks, with the
  notifications drained between them. An idle process never wakes.
- Cancel requests addressed to this process go to the handler set by the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from fleet._envelope import Outcome, unpack_notes
from fleet.broker import Broker
from fleet.state import InvocationRecord, StateStore

log = logging.getLogger(__name__)
FALLBACK_CHUNK = 250
"""Ids read per state-store query of the fallback, notifications drained between."""


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
        self._cond = threading.Condition()
        self._outcomes: dict[str, Outcome] = {}
        self._watched: set[str] = set()
        self._waiting: Counter[str] = Counter()
        self._since: dict[str, float] = {}
        """When each id in `_waiting` began to be waited on (monotonic)."""
        self._closed = False
        self._asleep = False
        """True while the listener thread may be blocked without a timeout (nobody waited)."""
        self.on_cancel: Callable[[str], None] | None = None
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
        with self._cond:
            self._enter(ids)
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
                    self._cond.wait(left)
            finally:
                self._waiting.subtract(ids)
                for i in ids:
                    if self._waiting[i] <= 0:
                        del self._waiting[i]
                        self._since.pop(i, None)
                        if i not in self._watched:
                            self._outcomes.pop(i, None)

    def wait_any(self, ids: Sequence[str], timeout: float | None = None) -> list[Outcome]:
        """Block until at least one id has an outcome; return those that have one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._enter(ids)
            try:
                while True:
                    done = [self._outcomes[i] for i in ids if i in self._outcomes]
                    if done or not ids:
                        return done
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"none of {len(ids)} invocation(s) finished")
                    self._cond.wait(left)
            finally:
                self._waiting.subtract(ids)
                self._waiting = +self._waiting
                for i in ids:
                    if i not in self._waiting:
                        self._since.pop(i, None)

    def _enter(self, ids: Sequence[str]) -> None:
        now = time.monotonic()
        self._waiting.update(ids)
        for i in ids:
            self._since.setdefault(i, now)
        if self._asleep:  # start the fallback timer; a busy listener keeps time already
            self._asleep = False
            self._listener.wakeup()

    def deliver(self, outcomes: Iterable[Outcome]) -> None:
        """Record outcomes learned in this process (e.g. committed by its own worker)."""
        with self._cond:
            self._store(outcomes)

    def _store(self, outcomes: Iterable[Outcome]) -> None:
        stored = False
        for outcome in outcomes:
            if outcome.id in self._watched or outcome.id in self._waiting:
                self._outcomes[outcome.id] = outcome
                stored = True
        if stored:
            self._cond.notify_all()

    def _run(self) -> None:
        next_check = 0.0
        while not self._closed:
            with self._cond:
                busy = bool(self._waiting)
                self._asleep = not busy
            timeout = max(0.0, min(self._poll, next_check - time.monotonic())) if busy else None
            try:
                payloads = self._listener.receive(timeout)
            except Exception:
                if self._closed:
                    return
                log.exception("fleet waiter: notification listener failed; retrying")
                time.sleep(self._poll)
                continue
            self._handle(payloads)
            if busy and time.monotonic() >= next_check:
                next_check = self._fallback()

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
        self._listener.wakeup()
        self._thread.join(timeout=5)
        self._listener.close()
