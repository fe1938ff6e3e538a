"""Commits outcomes in batches and tells waiters.

Job: take finished invocations from task threads, apply their status changes in as few
state-store round trips as the load allows, then push notifications to the processes
waiting on them.

Contract: `put` writes in the calling thread (no hand-off to another thread on the hot
path) unless another thread is writing at that moment: then it queues the outcome and
returns at once, and the writing thread takes everything queued along in its next batch
(no waiting to fill a batch: latency first; batches form by themselves under load).
Written first, announced after: a writing thread writes until the queue is empty, then
gives the writing up and announces what was written (extensions, notifications; one
announcing thread at a time, which takes along what others wrote meanwhile), so an
outcome put meanwhile is written at once by its own thread instead of waiting behind
those notifications; each outcome's `on_applied` (the executor frees the invocation's
slot there) is called as soon as it is in the store. A process killed between a body's
return and the write of its outcome has that body run again by recovery: this keeps that
window to the write itself. A failing state store is retried with backoff, never
dropped: an outcome not committed leaves the invocation RUNNING under this owner, where
recovery will find it if this process dies (its slot stays taken meanwhile: no new body
starts whose outcome could not be kept). Notifications go out only for changes that took
effect, so a late duplicate never announces a result that lost. Outcomes waited on in
this very process are delivered directly, without the broker. A task thread calls `put`
only once its task can no longer be interrupted (`Running.finished`), so no asynchronous
exception can cut a batch short. Before the notifications, the changes that took effect
go to the extensions' `after_change` (`fleet._transitions`; `put` names the task of each
change for it), so a caller that has its result and calls again sees the cache entry or
the freed limit it left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from fleet import _transitions
from fleet._envelope import Outcome, join_notes, pack_outcome
from fleet._value_class import value_class
from fleet._waiter import Waiter
from fleet.broker import Broker
from fleet.extensions import Dispatcher
from fleet.state import Change, StateStore

log = logging.getLogger(__name__)
BATCH = 500


@value_class
class Commit:
    change: Change
    reply_to: str
    task: str = ""
    on_applied: Callable[[], None] | None = None


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
        self._writing = False
        self._written: list[tuple[list[Commit], list[bool]]] = []
        """Written, not announced yet."""
        self._announcing = False

    def put(
        self,
        change: Change,
        reply_to: str,
        task: str = "",
        on_applied: Callable[[], None] | None = None,
    ) -> None:
        """Commit `change` of an invocation of `task` (see the module docstring); notify
        `reply_to` if it is final; call `on_applied` (from whichever thread wrote it) as
        soon as the change is in the store, before any notification."""
        with self._cond:
            self._pending += 1
            self._queue.append(Commit(change, reply_to, task, on_applied))
            if self._writing:
                return  # the writing thread takes it along
            self._writing = True
        self._drain()

    def _drain(self) -> None:
        """Write what is queued, batch after batch, then give up the writing and announce
        what was written (see the module docstring)."""
        batch: list[Commit] = []
        unannounced = 0
        try:
            while True:
                with self._cond:
                    batch = self._queue[:BATCH]
                    del self._queue[:BATCH]
                    if not batch:
                        self._writing = False  # from now on, a put writes in its own thread
                        break
                applied = self._apply([c.change for c in batch])
                with self._cond:
                    self._written.append((batch, applied))
                done, batch = batch, []
                for commit in done:
                    if commit.on_applied is not None:
                        commit.on_applied()
                unannounced += len(done)
                if unannounced >= BATCH:  # sustained load: announce along the way too
                    self._announce()
                    unannounced = 0
        except BaseException:  # not an Exception: those are retried inside `_apply`
            with self._cond:
                self._queue[:0] = batch  # not known to be committed: the next put tries
                self._writing = False
            raise
        self._announce()

    def _announce(self) -> None:
        """Announce everything written, unless another thread is announcing: that one
        takes it along (one announcer at a time, so notifications stay batched)."""
        with self._cond:
            if self._announcing:
                return
            self._announcing = True
        try:
            while True:
                with self._cond:
                    taken, self._written = self._written, []
                    if not taken:
                        self._announcing = False
                        return
                commits = [c for b, _ in taken for c in b]
                try:
                    self._announce_batch(commits, [ok for _, a in taken for ok in a])
                finally:
                    with self._cond:
                        self._pending -= len(commits)
                        self._cond.notify_all()
        except BaseException:
            with self._cond:
                self._announcing = False
            raise

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far is committed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)

    def _announce_batch(self, batch: list[Commit], applied: list[bool]) -> None:
        """Extensions' `after_change`, then the notifications of the changes that took effect."""
        changes = [c.change for c in batch]
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
