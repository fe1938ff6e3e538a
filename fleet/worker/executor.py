"""Running one invocation: decode, call, decide the outcome, pause while waiting.

Job: execute a claimed invocation on a pool thread and hand the resulting status change
to the committer; let a task that waits on other invocations pause.

Contract:
- The task body runs inside the extensions' `around_call` hooks (first extension
  outermost); an app with none pays one empty-tuple check. A hook that raises fails
  the attempt like the body would (retry rules apply).
- The outcome is SUCCESS with the encoded value; RETRY with a due time when the
  exception matches `retry_for` and attempts remain (exponential backoff, equal
  jitter; a backoff shorter than the leader's tick is released by this process at its
  due time, see `fleet._followup`); else FAILED with the exception (type, message,
  traceback). A value that cannot be encoded fails the invocation with
  `SerializationError` naming the task.
- Waiting (`pause_for`): the invocation goes PAUSED (recording what it waits on), gives
  its slot away, and goes back to RUNNING when the results are in, ahead of new work.
  A wait cycle raises `WaitCycleError` in the invocation that closes it. If the
  invocation stopped being ours meanwhile (cancelled, or recovered elsewhere), the
  thread unwinds with `Abandoned` and commits nothing. If the store stays down while
  pausing or resuming (`persist` gives up), the record may be PAUSED while the task
  goes on: the resume is then committed with the outcome, just ahead of it (same
  batch, same retries), so the record ends final, or PAUSED under a dead owner if this
  process dies first, which recovery requeues. It is never left PAUSED under a live
  owner that has finished with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from fleet import _context, _followup, _transitions, _values
from fleet._envelope import Envelope, Outcome
from fleet._exceptions import error_info
from fleet.codec import decode_call
from fleet.errors import SerializationError, WaitCycleError
from fleet.extensions import Call
from fleet.state import Change
from fleet.status import Status
from fleet.task import retry_delay, retry_limit
from fleet.worker.committer import Committer
from fleet.worker.limits import interrupt, withdraw
from fleet.worker.slots import Slots

if TYPE_CHECKING:
    from fleet.app import Fleet, Runtime
    from fleet.task import Task

log = logging.getLogger(__name__)
T = TypeVar("T")
RUNNING = frozenset({Status.RUNNING})
PAUSED = frozenset({Status.PAUSED})
MAX_WAIT_DEPTH = 64


class Abandoned(BaseException):
    """The invocation is no longer ours; unwind its thread without committing."""


@dataclass(slots=True)
class Running:
    """An invocation in hand, for heartbeats, limits and cancellation."""

    envelope: Envelope
    started: float
    thread_id: int = 0
    paused: bool = False
    cancelled: bool = False
    soft_deadline: float | None = None
    hard_deadline: float | None = None
    stopping: list[str] = field(default_factory=list)
    guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    interrupted: bool = False
    """An interrupt was sent to the thread (`finished` then withdraws it if pending)."""
    resume: Change | None = None
    """A PAUSED -> RUNNING change not known to be written (the store was down): it is
    committed ahead of the outcome."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The headers of the message that brought it (for `around_call`)."""
    why: str = ""
    """Why it is no longer ours, for the log ('cancelled', 'hard time limit', ...)."""

    def interrupt(self, exc_type: type[BaseException] | None = None) -> bool:
        """Raise `exc_type` (default `Abandoned`) in the thread running the invocation,
        unless it is past `finished`."""
        with self.guard:
            if self.thread_id:
                self.interrupted = True
            return interrupt(self.thread_id, exc_type)

    def finished(self) -> None:
        """Called by the invocation's thread once its outcome is decided: interrupts no
        longer reach the thread, and one sent but not raised yet is withdrawn."""
        with self.guard:
            if self.thread_id and self.interrupted:
                withdraw(self.thread_id)
            self.thread_id = 0


class Executor:
    """Runs invocations for one worker process."""

    def __init__(
        self,
        app: Fleet,
        runtime: Runtime,
        runner_id: str,
        slots: Slots,
        committer: Committer,
        in_hand: dict[str, Running],
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.runner_id = runner_id
        self.slots = slots
        self.committer = committer
        self.in_hand = in_hand
        self.on_done: Callable[[], None] = lambda: None
        self.on_wait: Callable[[], None] = lambda: None
        """Called by an invocation's thread before it blocks waiting on others."""

    def run(self, envelope: Envelope, task: Task[Any, Any]) -> None:
        """Run a claimed invocation to its outcome (in a pool thread; frees its slot)."""
        running = self.in_hand[envelope.id]
        running.thread_id = threading.get_ident()
        attempt = envelope.attempt + 1
        execution = _context.Execution(envelope.id, envelope.task, attempt, self)
        token = _context.enter(execution)
        change: Change | None = None
        try:
            change = self._call(envelope, task, attempt)
        except Abandoned:
            log.info(
                "%s %s abandoned without committing: %s",
                envelope.task,
                envelope.id,
                running.why
                or ("it was cancelled" if running.cancelled else "")
                or "its record changed meanwhile (cancelled, or recovered elsewhere)",
                extra={"invocation_id": envelope.id, "task": envelope.task},
            )
        finally:
            running.finished()  # first: the commit below must not be interrupted
            _context.leave(token)
            self.in_hand.pop(envelope.id, None)
            if change is None:
                self.slots.release()
            else:
                if running.resume is not None:  # ahead of the outcome, which expects RUNNING
                    self.committer.put(running.resume, "", envelope.task)
                # The slot is freed once the outcome is in the store, not before: no new
                # body starts here while a finished one could still be lost (and rerun by
                # recovery) if this process died.
                self.committer.put(
                    change, envelope.reply_to, envelope.task, on_applied=self.slots.release
                )
                if change.to is Status.RETRY and change.due is not None:
                    _followup.hold(self.app, [envelope.id], change.due)
            self.on_done()

    def _call(self, envelope: Envelope, task: Task[Any, Any], attempt: int) -> Change:
        ids = {"invocation_id": envelope.id, "task": envelope.task}
        state = self.runtime.state
        try:
            codec = self.app.codec  # the setting, never the message (checked on receipt)
            data = persist("loading arguments", lambda: _values.resolve(state, envelope.args))
            args, kwargs = decode_call(codec, data)
            log.debug("running %s attempt %d", envelope.task, attempt, extra=ids)
            dispatcher = self.app.dispatcher
            if dispatcher.around_call_hooks:
                running = self.in_hand.get(envelope.id)
                headers = running.headers if running is not None else {}
                call = Call(envelope.id, envelope.task, attempt, args, kwargs, headers)
                value = dispatcher.around_call(call, lambda: task.func(*args, **kwargs))
            else:
                value = task.func(*args, **kwargs)
        except Abandoned:
            raise
        except _context.Suspend as suspend:  # held until due, the attempt given back
            log.info("%s suspended: %s", envelope.task, suspend.reason, extra=ids)
            return Change(
                envelope.id,
                Status.RETRY,
                RUNNING,
                by=self.runner_id,
                expect_owner=self.runner_id,
                due=suspend.due,
                note=f"suspended: {suspend.reason}",
                refund_attempt=True,
            )
        except BaseException as exc:
            if self.in_hand.get(envelope.id, Running(envelope, 0)).cancelled:
                raise Abandoned from exc
            return self.failure(envelope, task, attempt, exc)
        try:
            encoded = self.app.codec.encode(value)
        except SerializationError as exc:
            wrapped = SerializationError(
                f"task {envelope.task!r} returned a {type(value).__qualname__!r}, which the "
                f"{self.app.codec.name} codec cannot encode: {exc}"
            )
            return self.failure(envelope, task, attempt, wrapped, retry=False)
        threshold = self.app.settings.large_value_threshold
        try:
            result = persist(
                "storing the result", lambda: _values.externalize(state, encoded, threshold)
            )
        except Exception as exc:  # the store stayed down: retry the invocation if allowed
            return self.failure(envelope, task, attempt, exc)
        return Change(
            envelope.id,
            Status.SUCCESS,
            RUNNING,
            by=self.runner_id,
            expect_owner=self.runner_id,
            result=result,
        )

    def failure(
        self,
        envelope: Envelope,
        task: Task[Any, Any],
        attempt: int,
        exc: BaseException,
        retry: bool = True,
    ) -> Change:
        ids = {"invocation_id": envelope.id, "task": envelope.task}
        info = error_info(exc)
        settings = self.app.settings
        options = task.options
        limit = retry_limit(options, settings)
        delay = retry_delay(options, settings, attempt, exc) if retry else None
        if delay is not None:
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.2fs",
                envelope.task,
                type(exc).__name__,
                exc,
                attempt,
                limit,
                delay,
                extra=ids,
            )
            return Change(
                envelope.id,
                Status.RETRY,
                RUNNING,
                by=self.runner_id,
                expect_owner=self.runner_id,
                error=info,
                due=time.time() + delay,
                note=f"retry {attempt}/{limit} in {delay:.3f}s",
            )
        log.info("%s failed: %s: %s", envelope.task, type(exc).__name__, exc, extra=ids)
        return Change(
            envelope.id,
            Status.FAILED,
            RUNNING,
            by=self.runner_id,
            expect_owner=self.runner_id,
            error=info,
        )

    # -- waiting on other invocations ---------------------------------------------------

    def pause_for(
        self, execution: _context.Execution, ids: Sequence[str], timeout: float | None
    ) -> dict[str, Outcome]:
        waiter = self.runtime.waiter
        if all(waiter.peek(i) is not None for i in ids):
            return waiter.wait(ids, 0)
        me = execution.invocation_id
        running = self.in_hand.get(me)
        resume = Change(me, Status.RUNNING, PAUSED, by=self.runner_id, expect_owner=self.runner_id)
        if running is not None and running.resume is not None:
            # An earlier resume is not known to be written: write it before pausing again.
            persist("resuming", lambda: self._apply(resume, execution.task))
            running.resume = None
        pause = Change(
            me,
            Status.PAUSED,
            RUNNING,
            by=self.runner_id,
            expect_owner=self.runner_id,
            waits_on=tuple(ids),
        )
        try:
            paused = persist("pausing", lambda: self._apply(pause, execution.task))
        except Exception:
            # It may have been written all the same (an unsure write): resume first.
            if running is not None:
                running.resume = resume
            raise
        if not paused:
            raise Abandoned
        if running is not None:
            running.paused = True
        self.slots.release()
        self.on_wait()
        try:
            self._check_cycle(me, ids)
            return waiter.wait(ids, timeout)
        finally:
            self.slots.resume()
            if running is not None:
                running.paused = False
            if not self._resume(execution, resume, running):
                raise Abandoned

    def _apply(self, change: Change, task: str) -> bool:
        state, dispatcher = self.runtime.state, self.app.dispatcher
        return _transitions.apply(state, [change], dispatcher, task)[0]

    def _resume(
        self, execution: _context.Execution, resume: Change, running: Running | None
    ) -> bool:
        """Write PAUSED -> RUNNING; False if the invocation is no longer ours. If the store
        stays down, go on running and commit the resume ahead of the outcome."""
        try:
            return persist("resuming", lambda: self._apply(resume, execution.task))
        except Exception:
            log.error(
                "%s %s: could not record its resume (state store down); it goes on and the "
                "resume is committed with its outcome",
                execution.task,
                execution.invocation_id,
                exc_info=True,
                extra={"invocation_id": execution.invocation_id, "task": execution.task},
            )
            if running is None:
                raise
            running.resume = resume
            return True

    def _check_cycle(self, me: str, ids: Sequence[str]) -> None:
        """Raise WaitCycleError if any of `ids` (transitively) waits on `me`."""
        frontier, seen, path = list(ids), set(), {i: [i] for i in ids}
        for _ in range(MAX_WAIT_DEPTH):
            if not frontier:
                return
            if me in frontier:
                chain = " -> ".join([me, *path[me]])
                raise WaitCycleError(f"wait cycle: {chain}; these invocations can never finish")
            seen.update(frontier)
            next_frontier = []
            for record in self.runtime.state.get(frontier):
                if record.status is Status.PAUSED:
                    for waited in record.waits_on:
                        if waited not in seen or waited == me:
                            path[waited] = [*path[record.id], waited]
                            next_frontier.append(waited)
            frontier = next_frontier


STORE_PATIENCE = 60.0
"""Seconds a task thread keeps retrying a failing state store before giving up."""


def persist(what: str, call: Callable[[], T]) -> T:
    """Call a state-store operation, retrying with backoff while the store is down."""
    deadline = time.monotonic() + STORE_PATIENCE
    delay = 0.1
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("state store failed %s; retrying in %.1fs", what, delay, exc_info=True)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
