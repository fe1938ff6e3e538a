"""What a process does shortly after publishing or holding invocations, off the call path.

Job: for one process and app (one per `Runtime`), (1) clear the recovery deadline of
invocations whose messages the broker confirmed and whose outcome this process has not
seen soon after, in batches, and (2) release invocations held for less than the
leader's tick (a sub-second retry backoff or countdown) at their due time, instead of
at the leader's next tick.

Contract:
- `published(messages)` only records the ids (no I/O on the caller's thread), each
  with a grace of `GRACE` seconds (never more than `pending_timeout / 8`).
  `settled(ids)` (the waiter saw their outcome: `Waiter.on_outcomes`) drops them: a
  final record needs no clearing, so a call whose result comes back quickly costs no
  write here. One background thread clears the `due` of the ids whose grace passed
  unsettled (`StateStore.clear_due`, PENDING records only) in one write per batch, at
  most one batch per grace, and of every id still unsettled at `close`
  (`Runtime.close`, or interpreter exit). Until then a record registered PENDING keeps
  `due = now + pending_timeout`; the leader republishes only PENDING records whose due
  time has passed: those whose message was never confirmed (a RUNNING or final record
  is never republished for its deadline). A process that dies between a confirm and
  the clearing leaves its deadline in place, so a call still PENDING is published once
  more after `pending_timeout`: one harmless extra copy at most (the claim is a
  compare-and-set). A failed clearing is logged and dropped with the same consequence.
- `release_at(ids, due)` wakes the same thread at `due` (no polling: it sleeps until
  the earliest due time or the next flush) and requeues those of `ids` that are still
  held and due (`fleet.worker.recovery.release`, a compare-and-set, so the leader and
  this thread never release one twice). A process that exits first leaves them to
  the leader's next tick, as before.
"""

from __future__ import annotations

import atexit
import heapq
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleet.broker import Message

if TYPE_CHECKING:
    from fleet.app import Fleet, Runtime

log = logging.getLogger(__name__)
GRACE = 2.5
"""Seconds after its confirm within which an outcome spares an invocation the write that
clears its deadline; also the least time between two such writes."""

_lock = threading.Lock()
_by_runtime: weakref.WeakKeyDictionary[Runtime, FollowUp] = weakref.WeakKeyDictionary()


def of(app: Fleet) -> FollowUp:
    """The follow-up of `app` in this process (started on first use)."""
    runtime = app.runtime()
    with _lock:
        follow = _by_runtime.get(runtime)
        if follow is None:
            follow = _by_runtime[runtime] = FollowUp(app, runtime)
    return follow


@atexit.register
def _flush_all() -> None:
    """At interpreter exit (a script that never closed its app): record what the broker
    confirmed, so that recovery does not publish it again."""
    with _lock:
        follows = list(_by_runtime.values())
    for follow in follows:
        if follow.pid == os.getpid():
            follow.close()


def hold(app: Fleet, ids: Sequence[str], due: float) -> None:
    """`ids` were just held until `due`: release them then if that comes before the
    leader's next tick could (within `schedule_interval`); else leave them to it."""
    if due - time.time() < app.settings.schedule_interval:
        of(app).release_at(ids, due)


def close(runtime: Runtime) -> None:
    """Flush and stop the follow-up of `runtime`, if it has one (`Runtime.close`)."""
    with _lock:
        follow = _by_runtime.pop(runtime, None)
    if follow is not None:
        follow.close()


class FollowUp:
    """One thread: clears deadlines of confirmed publishes, releases short holds."""

    def __init__(self, app: Fleet, runtime: Runtime) -> None:
        self._app = weakref.ref(app)
        self.pid = os.getpid()
        self._runtime = runtime
        self._by = f"{socket.gethostname()}:{os.getpid()}:release"
        self._cond = threading.Condition()
        self._grace = min(GRACE, app.settings.pending_timeout / 8)
        self._unsettled: dict[str, float] = {}
        """Confirmed ids whose outcome is not seen yet -> end of their grace (monotonic);
        in confirm order, so in order of that end."""
        self._flush_at: float | None = None
        self._last_flush = float("-inf")
        self._early: dict[str, float] = {}
        """Ids settled before their confirm was handled -> when (monotonic)."""
        self._timers: list[tuple[float, int, tuple[str, ...]]] = []
        self._seq = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fleet-followup", daemon=True)
        self._thread.start()
        runtime.waiter.on_outcomes = self.settled

    def published(self, messages: Sequence[Message]) -> None:
        """The broker confirmed these messages: clear their invocations' deadlines unless
        their outcome is seen within the grace."""
        with self._cond:
            if self._closed:
                return
            end = time.monotonic() + self._grace
            for m in messages:
                if self._early.pop(m.invocation_id, None) is not None:
                    continue  # final already
                self._unsettled.pop(m.invocation_id, None)  # keep the order of the ends
                self._unsettled[m.invocation_id] = end
            if self._flush_at is None and self._unsettled:
                self._flush_at = max(end, self._last_flush + self._grace)
                self._cond.notify()

    def settled(self, ids: Sequence[str]) -> None:
        """These invocations are final (their outcome reached this process)."""
        with self._cond:
            now = time.monotonic()
            for i in ids:
                if self._unsettled.pop(i, None) is None:
                    self._early[i] = now  # its confirm may not be handled yet
            while self._early:  # forget those whose confirm would have come by now
                first = next(iter(self._early))
                if self._early[first] > now - self._grace:
                    break
                del self._early[first]

    def release_at(self, ids: Sequence[str], due: float) -> None:
        """Release the held invocations `ids` at `due` (seconds since the epoch)."""
        with self._cond:
            if self._closed:
                return
            self._seq += 1
            heapq.heappush(self._timers, (due, self._seq, tuple(ids)))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)
        self._flush()  # whatever came in last, in the caller's thread

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                wait = self._next_wait()
                if wait is None or wait > 0:
                    self._cond.wait(wait)
                    continue
            self._flush()
            self._release()

    def _next_wait(self) -> float | None:
        waits = []
        if self._flush_at is not None:
            waits.append(self._flush_at - time.monotonic())
        if self._timers:
            waits.append(self._timers[0][0] - time.time())
        return max(0.0, min(waits)) if waits else None

    def _flush(self) -> None:
        with self._cond:
            now = time.monotonic()
            if self._closed:
                ids, self._unsettled, self._flush_at = list(self._unsettled), {}, None
            elif self._flush_at is None or now < self._flush_at:
                return
            else:
                ids = [i for i, end in self._unsettled.items() if end <= now]
                for i in ids:
                    del self._unsettled[i]
                self._last_flush = now
                first = next(iter(self._unsettled.values()), None)
                self._flush_at = None if first is None else max(first, now + self._grace)
            if not ids:
                return
        try:
            self._runtime.state.clear_due(ids)
        except Exception:
            log.warning(
                "could not clear the recovery deadline of %d published invocation(s); "
                "recovery will publish them once more after pending_timeout",
                len(ids),
                exc_info=True,
            )

    def _release(self) -> None:
        now = time.time()
        due: list[str] = []
        with self._cond:
            while self._timers and self._timers[0][0] <= now:
                due.extend(heapq.heappop(self._timers)[2])
        app = self._app()
        if not due or app is None or self._closed:
            return
        # Imported here: producers that never hold invocations need not load the worker.
        from fleet.worker.recovery import release

        try:
            release(app, due, self._by)
        except Exception:
            log.warning(
                "could not release %d due invocation(s); the leader will", len(due), exc_info=True
            )
