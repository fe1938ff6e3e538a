"""The replaying runtime a workflow's body runs under.

Job: make a workflow's child calls, helpers, data, timers and signals durable steps of
its history (`fleet.workflows._replay.Replayer`), and make a replay of that history
return what was recorded.

Contract:
- Child calls (`Fleet.submit` under `fleet._context.intercept`): one step per submit
  (a `.parallelize` is one step holding every child). New: the children are submitted
  under ids derived from (workflow invocation, position, index), then the step is
  recorded (one store command). Replayed: the recorded invocations are returned, never
  submitted again. An attempt that follows one that died (attempt > 1) checks, at its
  first new call step only, which of those ids exist already (the dead attempt may
  have submitted them without recording the step) and submits only the others.
- `value(name, draw)`: a recorded value (now, uuid4, random, side_effect).
- `set`/`get`: workflow data of the run, each a step (a 'set' event sets the data in
  the same store command), so a replay reads what the first execution read.
- `sleep`: records its due time; on a worker, an early resume `Suspend`s the attempt
  until then (no slot, thread or message held); inline it sleeps in the thread.
- `wait_signal`: records its deadline, then takes the n-th signal of that name sent to
  this workflow invocation (recorded as a step), or times out (recorded too,
  `SignalTimeoutError`); on a worker it suspends while neither has happened.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgpack

from fleet import _context
from fleet._waiter import outcome_of
from fleet.codec import decode_call, encode_call
from fleet.invocation import Invocation
from fleet.workflows._errors import SignalTimeoutError
from fleet.workflows._history import Event, HistoryStore
from fleet.workflows._replay import Replayer

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger("fleet.workflows")
SIGNAL_RECHECK = 3600.0
"""Seconds a workflow waiting for a signal without timeout stays suspended before it
checks again (a safety net: a signal wakes it at once)."""
INLINE_POLL = 0.02

current_runtime: ContextVar[WorkflowRuntime | None] = ContextVar("fleet_workflow", default=None)
inline_id: ContextVar[str] = ContextVar("fleet_workflow_inline_id", default="")
"""Inline mode: the invocation id of the workflow call about to run in this thread."""
task_run: ContextVar[str] = ContextVar("fleet_workflow_task_run", default="")
"""Inline mode: the run of the child task running in this thread (for `wf.get`)."""


def child_id(history: str, seq: int, index: int) -> str:
    """The invocation id of child `index` of step `seq` (same on every replay)."""
    digest = hashlib.sha256(f"{history}/{seq}/{index}".encode()).hexdigest()
    return f"{history[:12]}{digest[:20]}"


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


class WorkflowRuntime:
    """One attempt of one workflow invocation (see the module docstring)."""

    def __init__(
        self,
        app: Fleet,
        store: HistoryStore,
        history: str,
        run: str,
        *,
        attempt: int = 1,
        inline: bool = False,
        replay_only: bool = False,
    ) -> None:
        self.app = app
        self.store = store
        self.history = history
        self.run = run
        self.inline = inline
        self.replayer = Replayer(store, history, run, show=self._show, strict=replay_only)
        self.replay_only = replay_only
        self.check_existing = attempt > 1 and not inline
        self.taken: dict[str, int] = {}
        self.preloaded = False

    # -- child calls ---------------------------------------------------------------------

    def submit(self, task: Any, bounds: Sequence[Any], due: float | None) -> list[Any]:
        codec = self.app.codec
        calls = [encode_call(codec, task.name, b.args, b.kwargs, task.params) for b in bounds]
        event, replayed = self.replayer.step("call", task.name, pack(calls))
        if replayed:
            if not self.inline and not self.preloaded:
                self._preload([i for e in self.replayer.events if e.kind == "call" for i in e.ids])
            return [self._handle(task.name, i) for i in event.ids]
        ids = [child_id(self.history, event.seq, i) for i in range(len(bounds))]
        todo = list(zip(ids, bounds, strict=True))
        if self.check_existing:  # the attempt that died may have submitted them
            existing = {r.id for r in self._preload(ids)}
            todo = [(i, b) for i, b in todo if i not in existing]
            self.check_existing = False
        submitted = {h.id: h for h in self._submit(task, todo, due)}
        self.replayer.record(replace(event, ids=tuple(ids)))
        return [submitted.get(i) or self._handle(task.name, i) for i in ids]

    def _preload(self, ids: Sequence[str]) -> list[Any]:
        """Watch recorded children and hand the outcomes of the finished ones to this
        process's waiter (one batched read), so waiting on them costs no round trip;
        returns their records."""
        self.preloaded = True
        runtime = self.app.runtime()
        runtime.waiter.watch(ids)
        records = runtime.state.get(ids) if ids else []
        runtime.waiter.deliver([o for o in map(outcome_of, records) if o is not None])
        return records

    def _submit(self, task: Any, todo: list[tuple[str, Any]], due: float | None) -> list[Any]:
        if not todo:
            return []
        token = _context.intercept(None)  # the children's own calls are theirs
        outer = current_runtime.set(None)
        try:
            if not self.inline:
                return self.app.submit(task, [b for _, b in todo], due, ids=[i for i, _ in todo])
            # inline: each child runs now, in order, in this thread
            handles = []
            for invocation_id, bound in todo:
                tokens = (inline_id.set(invocation_id), task_run.set(self.run))
                try:
                    handles += self.app.submit(task, [bound], due, ids=[invocation_id])
                finally:
                    task_run.reset(tokens[1])
                    inline_id.reset(tokens[0])
            return handles
        finally:
            current_runtime.reset(outer)
            _context.release(token)

    def _handle(self, task: str, invocation_id: str) -> Any:
        if self.inline:
            return self.app.invocation(invocation_id)
        self.app.runtime().waiter.watch([invocation_id])  # forgotten with the handle
        return Invocation(self.app, invocation_id, task, watched=True)

    def _show(self, event: Event) -> str:
        if event.kind != "call":
            return ""
        try:
            calls = [decode_call(self.app.codec, c) for c in unpack(event.data)]
        except Exception:  # a history written by other code: show what can be shown
            return "<undecodable arguments>"
        shown = [
            ", ".join([*map(repr, a), *(f"{k}={v!r}" for k, v in kw.items())]) for a, kw in calls
        ]
        return shown[0] if len(shown) == 1 else f"x{len(shown)}: " + "; ".join(shown)

    # -- recorded values, markers, data --------------------------------------------------

    def value(self, name: str, draw: Callable[[], Any]) -> Any:
        """A value drawn once and recorded (`draw` runs only beyond the history)."""
        event, replayed = self.replayer.step("value", name)
        if replayed:
            return self.app.codec.decode(event.data)
        value = draw()
        self.replayer.record(replace(event, data=self.app.codec.encode(value)))
        return value

    def version(self, marker: str, current: int) -> int:
        data = self.replayer.version(marker, current, pack)
        return 0 if data is None else int(unpack(data))

    def set(self, key: str, value: Any) -> None:
        event, replayed = self.replayer.step("set", key)
        if not replayed:  # the 'set' event sets the data too (one store command)
            self.replayer.record(replace(event, data=self.app.codec.encode(value)))

    def get(self, key: str, default: Any = None) -> Any:
        event, replayed = self.replayer.step("get", key)
        if not replayed:
            found = self.store.data(self.run).get(key)
            data = pack([found is not None, found or b""])
            event = self.replayer.record(replace(event, data=data))
        present, value = unpack(event.data)
        return self.app.codec.decode(value) if present else default

    # -- timers and signals --------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        event, replayed = self.replayer.step("sleep", "sleep")
        if replayed:
            due = float(unpack(event.data))
        else:
            due = time.time() + seconds
            self.replayer.record(replace(event, data=pack(due)))
        self._until(due, f"sleeping until {due:.3f}")

    def _until(self, due: float, reason: str) -> None:
        left = due - time.time()
        if left <= 0 or self.replay_only:
            return
        if self.inline:
            time.sleep(left)
            return
        raise _context.Suspend(due, reason)

    def wait_signal(self, name: str, timeout: float | None) -> Any:
        start, replayed = self.replayer.step("signal", name)
        if replayed:
            deadline = unpack(start.data)
        else:
            deadline = None if timeout is None else time.time() + timeout
            self.replayer.record(replace(start, data=pack(deadline)))
        taken = self.taken.get(name, 0)
        outcome, replayed = self.replayer.step("signal", name)
        while not replayed:
            sent = self.store.signals(self.history, name)
            if len(sent) > taken:
                outcome = self.replayer.record(replace(outcome, data=pack([True, sent[taken]])))
                break
            if deadline is not None and time.time() >= deadline:
                outcome = self.replayer.record(replace(outcome, data=pack([False, b""])))
                break
            if not self.inline:
                due = time.time() + SIGNAL_RECHECK if deadline is None else deadline
                raise _context.Suspend(due, f"waiting for signal {name!r} #{taken}")
            time.sleep(INLINE_POLL)
        got, payload = unpack(outcome.data)
        if not got:
            raise SignalTimeoutError(
                f"workflow {self.history} waited {timeout}s for signal {name!r}; it did not come"
            )
        self.taken[name] = taken + 1
        return self.app.codec.decode(payload)
