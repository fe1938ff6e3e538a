"""Commits outcomes in batches and tells waiters.

Job: take finished invocations from task threads, apply their status changes in as few
state-store round trips as the load allows, then push notifications to the processes
waiting on them.

Contract: `put` never blocks a task thread. The committer thread applies everything
queued at the moment it wakes as one batch (no waiting to fill a batch: latency first).
A failing state store is retried with backoff, never dropped: an outcome not committed
leaves the invocation RUNNING under this owner, where recovery will find it if this
process dies. Notifications go out only for changes that took effect, so a late
duplicate never announces a result that lost. Outcomes waited on in this very process
are delivered directly, without the broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from fleet._envelope import Outcome, join_notes, pack_outcome
from fleet._waiter import Waiter
from fleet.broker import Broker
from fleet.state import Change, StateStore

log = logging.getLogger(__name__)
BATCH = 500


@dataclass(frozen=True, slots=True)
class Commit:
    change: Change
    reply_to: str


class Committer:
    def __init__(self, state: StateStore, broker: Broker, waiter: Waiter) -> None:
        self._state = state
        self._broker = broker
        self._waiter = waiter
        self._queue: queue.SimpleQueue[Commit | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="fleet-committer", daemon=True)
        self._thread.start()

    def put(self, change: Change, reply_to: str) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(Commit(change, reply_to))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is committed; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._commit(batch)
                    return
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[Commit]) -> None:
        applied = self._apply([c.change for c in batch])
        local, notes = [], []
        for commit, ok in zip(batch, applied, strict=True):
            change = commit.change
            if not ok:
                log.info("commit of %s to %s lost: it changed meanwhile", change.id, change.to)
                continue
            if change.to.final and commit.reply_to:
                outcome = Outcome(change.id, change.to, change.result, change.error)
                if commit.reply_to == self._waiter.address:
                    local.append(outcome)
                else:
                    notes.append((commit.reply_to, pack_outcome(outcome)))
        if local:
            self._waiter.deliver(local)
        if notes:
            try:
                self._broker.notify(join_notes(notes))
            except Exception:
                log.warning(
                    "result notifications failed; waiters fall back to the store", exc_info=True
                )
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()

    def _apply(self, changes: list[Change]) -> list[bool]:
        delay = 0.1
        while True:
            try:
                return self._state.apply(changes)
            except Exception:
                log.exception(
                    "state store failed committing %d outcome(s); retrying in %.1fs",
                    len(changes),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
