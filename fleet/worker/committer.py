"""Commits outcomes in batches and tells waiters.

Job: take finished invocations from task threads, apply their status changes in as few
state-store round trips as the load allows, then push notifications to the processes
waiting on them.

Contract: `put` commits in the calling thread (no hand-off to another thread on the
hot path) unless another thread is committing at that moment: then it queues the
outcome and returns at once, and the committing thread takes everything queued along
in its next batch (no waiting to fill a batch: latency first; batches form by
themselves under load). A failing state store is retried with backoff, never dropped:
an outcome not committed leaves the invocation RUNNING under this owner, where
recovery will find it if this process dies. Notifications go out only for changes
that took effect, so a late duplicate never announces a result that lost. Outcomes
waited on in this very process are delivered directly, without the broker. A task
thread calls `put` only once its task can no longer be interrupted
(`Running.finished`), so no asynchronous exception can cut a batch short. Before the
notifications, the changes that took effect go to the extensions' `after_change`
(`fleet._transitions`; `put` names the task of each change for it), so a caller that
has its result and calls again sees the cache entry or the freed limit it left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleet import _transitions
from fleet._envelope import Outcome, join_notes, pack_outcome
from fleet._waiter import Waiter
from fleet.broker import Broker
from fleet.extensions import Dispatcher
from fleet.state import Change, StateStore

log = logging.getLogger(__name__)
BATCH = 500


@dataclass(frozen=True, slots=True)
class Commit:
    change: Change
    reply_to: str
    task: str = ""


class Committer:
    def __init__(
        self,
        state: StateStore,
        broker: Broker,
        waiter: Waiter,
        notify: Callable[[Sequence[tuple[str, bytes]]], None] | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._state = state
        self._dispatcher = dispatcher
        self._notify = broker.notify if notify is None else notify
        self._waiter = waiter
        self._cond = threading.Condition()
        self._queue: list[Commit] = []
        self._pending = 0
        self._committing = False

    def put(self, change: Change, reply_to: str, task: str = "") -> None:
        """Commit `change` of an invocation of `task` (see the module docstring); notify
        `reply_to` if it is final."""
        with self._cond:
            self._pending += 1
            self._queue.append(Commit(change, reply_to, task))
            if self._committing:
                return  # the committing thread takes it along
            self._committing = True
        self._drain()

    def _drain(self) -> None:
        batch: list[Commit] = []
        try:
            while True:
                with self._cond:
                    if batch:
                        self._pending -= len(batch)
                        self._cond.notify_all()
                    batch = self._queue[:BATCH]
                    del self._queue[:BATCH]
                    if not batch:
                        self._committing = False
                        return
                self._commit(batch)
        except BaseException:  # not an Exception: those are retried inside `_commit`
            with self._cond:
                self._queue[:0] = batch  # not known to be committed: the next put tries
                self._committing = False
            raise

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is committed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)

    def _commit(self, batch: list[Commit]) -> None:
        changes = [c.change for c in batch]
        applied = self._apply(changes)
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
        # Before the notifications: a waiter that calls again at once sees every
        # consequence of the result (a cached result remembered, a limit released).
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher.after_change_hooks:
            _transitions.emit(dispatcher, changes, applied, [c.task for c in batch])
        if local:
            self._waiter.deliver(local)
        if notes:
            try:
                self._notify(join_notes(notes))
            except Exception:
                log.warning(
                    "result notifications failed; waiters fall back to the store", exc_info=True
                )

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
