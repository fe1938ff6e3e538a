"""Inline mode: a call runs in the caller's thread, the way a worker would run it.

Job: run one call of a task at once, in this thread, for `Fleet.submit` in inline mode,
and keep the handles of recent calls so that `Fleet.invocation(id)` finds them.

Contract:
- The arguments cross the codec both ways: an argument the codec cannot encode raises
  `ArgumentEncodingError` at the call site, and the function receives the decoded
  copies a worker would receive.
- A failing attempt is retried as a worker retries it (`max_retries`, `retry_for`,
  decided by `fleet.task.retry_delay`); the backoff is slept only when the setting
  `inline_retry_sleep` is on. Every attempt is in the handle's history.
- The value crosses the codec too: a value the codec cannot encode fails the
  invocation with `SerializationError` naming the task, as on a worker. `.result()`
  raises the task's own exception object, with its local traceback.
- Fan-out (`parallel_func`/`aggregate_func`) needs nothing here: `DirectTask` submits
  one call per item and aggregates their values, inline or not.
- The last `KEEP` handles are kept in memory; nothing is written anywhere, no broker or
  state store is opened.
- The extensions' `before_publish` applies: a call they reuse returns the handle of
  the existing inline call (waiting for it when it still runs in another thread; one
  that would wait on its own thread raises `WaitCycleError`). `before_claim` does not
  (no worker claims inline calls): running and rate limits do not apply inline.
- Not done inline: countdown and eta (a scheduled call runs at once), soft and hard
  time limits, cancellation (the call has already finished), pausing, priorities,
  dead letters, large-value blobs, `current_invocation()`.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from fleet._exceptions import error_info
from fleet._prepare import new_id
from fleet.codec import decode_call, encode_call
from fleet.errors import InvocationNotFoundError, SerializationError, WaitCycleError
from fleet.extensions import Applied, AppliedChange, PublishBatch
from fleet.invocation import InlineInvocation
from fleet.state import ErrorInfo
from fleet.status import HistoryEntry, Status
from fleet.task import retry_delay, retry_limit

if TYPE_CHECKING:
    from fleet._client import Client
    from fleet.task import Task

log = logging.getLogger(__name__)
KEEP = 10_000
"""Handles of the most recent inline calls that `Fleet.invocation(id)` can find."""


class InlineRunner:
    """Runs calls of one app's tasks in the caller's thread and remembers the handles."""

    def __init__(self, app: Client) -> None:
        self.app = app
        self._handles: OrderedDict[str, InlineInvocation[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[threading.Event, int]] = {}
        """Calls running now: set when each finishes, and the thread running it."""

    def get(self, invocation_id: str) -> InlineInvocation[Any]:
        """The handle of a recent inline call.

        Raises:
            InvocationNotFoundError: no inline call with that id among the last `KEEP`.
        """
        with self._lock:
            found = self._handles.get(invocation_id)
        if found is None:
            raise InvocationNotFoundError(
                f"no inline invocation {invocation_id!r} (inline mode keeps the last {KEEP})"
            )
        return found

    def run(
        self,
        task: Task[Any, Any],
        bound: inspect.BoundArguments,
        invocation_id: str = "",
        key: str = "",
    ) -> InlineInvocation[Any]:
        """Run one call to its outcome (under `invocation_id`, else a new id; with the
        idempotency `key`, if any); see the module docstring."""
        codec = self.app.codec
        data = encode_call(codec, task.name, bound.args, bound.kwargs, task.params)
        invocation_id = invocation_id or new_id()
        if self.app.dispatcher.before_publish_hooks:
            reused = self._reuse(task, data, invocation_id, key)
            if reused is not None:
                return reused
        done = threading.Event()
        with self._lock:
            self._running[invocation_id] = (done, threading.get_ident())
        try:
            return self._run(task, data, invocation_id)
        finally:
            with self._lock:
                del self._running[invocation_id]
            done.set()

    def _reuse(
        self, task: Task[Any, Any], data: bytes, invocation_id: str, key: str
    ) -> InlineInvocation[Any] | None:
        """The handle of the call the extensions reuse for this one (`before_publish`),
        once it finished; None to run this one."""
        batch = PublishBatch(
            task.name,
            (invocation_id,),
            (data,),
            self.app.codec.name,
            task.options.extensions,
            idempotency_keys=(key,) if key else (),
        )
        reuses = self.app.dispatcher.before_publish(batch)
        if not reuses:
            return None
        existing, reason = reuses[0].existing, reuses[0].reason
        log.info(
            "%s: inline call %s reuses %s (%s)",
            task.name,
            invocation_id,
            existing,
            reason,
            extra={"invocation_id": existing, "task": task.name},
        )
        with self._lock:
            running = self._running.get(existing)
        if running is not None:
            if running[1] == threading.get_ident():
                raise WaitCycleError(
                    f"{task.name}: this inline call would reuse {existing}, which is still "
                    f"running in this very thread ({reason}): it would wait on itself"
                )
            running[0].wait()
        try:
            handle = self.get(existing)
        except InvocationNotFoundError:  # no longer kept: run this call itself
            return None
        return handle

    def _run(self, task: Task[Any, Any], data: bytes, invocation_id: str) -> InlineInvocation[Any]:
        codec = self.app.codec
        args, kwargs = decode_call(codec, data)
        history = [HistoryEntry(Status.PENDING, time.time(), "", "submitted inline")]
        try:
            encoded = self._attempts(task, invocation_id, history, args, kwargs)
            value = codec.decode(encoded)
        except Exception as exc:
            history.append(HistoryEntry(Status.FAILED, time.time(), "inline"))
            handle: InlineInvocation[Any] = InlineInvocation(
                self.app, invocation_id, task.name, history, error=exc
            )
            self._keep(handle)
            self._changed(handle, Status.FAILED, data, error=error_info(exc))
            return handle
        history.append(HistoryEntry(Status.SUCCESS, time.time(), "inline"))
        handle = InlineInvocation(self.app, invocation_id, task.name, history, value)
        self._keep(handle)
        self._changed(handle, Status.SUCCESS, data, result=encoded)
        return handle

    def _changed(
        self,
        handle: InlineInvocation[Any],
        status: Status,
        args: bytes,
        result: bytes | None = None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Tell the extensions (`after_change`) of the outcome: outcome and event
        triggers run inline too, in this thread, before the call returns."""
        dispatcher = self.app.dispatcher
        if dispatcher.after_change_hooks:
            change = AppliedChange(
                handle.id,
                handle.task,
                Status.RUNNING,
                status,
                args,
                self.app.codec.name,
                result,
                error,
                at=time.time(),
            )
            dispatcher.after_change(Applied((change,)))

    def _attempts(
        self,
        task: Task[Any, Any],
        invocation_id: str,
        history: list[HistoryEntry],
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> Any:
        """Call until an attempt succeeds or is not retried; return the encoded value."""
        settings = self.app.settings
        ids = {"invocation_id": invocation_id, "task": task.name}
        attempt = 1
        while True:
            history.append(HistoryEntry(Status.RUNNING, time.time(), "inline"))
            try:
                value = task.func(*args, **kwargs)
                break
            except Exception as exc:
                delay = retry_delay(task.options, settings, attempt, exc)
                if delay is None:
                    log.info(
                        "%s failed inline: %s: %s", task.name, type(exc).__name__, exc, extra=ids
                    )
                    raise
                note = f"retry {attempt}/{retry_limit(task.options, settings)}"
                log.info(
                    "%s failed inline (%s: %s); %s",
                    task.name,
                    type(exc).__name__,
                    exc,
                    note,
                    extra=ids,
                )
                history.append(HistoryEntry(Status.RETRY, time.time(), "inline", note))
                if settings.inline_retry_sleep:
                    time.sleep(delay)
                attempt += 1
        codec = self.app.codec
        try:
            return codec.encode(value)
        except SerializationError as exc:
            raise SerializationError(
                f"task {task.name!r} returned a {type(value).__qualname__!r}, which the "
                f"{codec.name} codec cannot encode: {exc}"
            ) from exc

    def _keep(self, handle: InlineInvocation[Any]) -> InlineInvocation[Any]:
        with self._lock:
            self._handles[handle.id] = handle
            while len(self._handles) > KEEP:
                self._handles.popitem(last=False)
        return handle
