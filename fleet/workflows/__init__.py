"""Durable workflows: deterministic replay, workflow data, durable timers and signals.

Job: the public surface. `@app.workflow` declares a workflow; inside it, these helpers
(use them as `from fleet import workflows as wf`) are one-liners over the replaying
runtime of the running workflow (`fleet.workflows._runtime`):

    wf.now() / wf.uuid4() / wf.random() / wf.side_effect(fn)   recorded values
    wf.version("marker", 1)                                     code-change marker
    wf.set(key, value) / wf.get(key)                            workflow data
    wf.sleep(timedelta(...)) / wf.wait_signal(name, timeout=)   durable timer, signal

Contract: the helpers that record a step raise `WorkflowError` outside a workflow;
`get` and `set` also work in a task called by a workflow (no step recorded: the task
reads and writes its run's data directly). See the README's Workflows section for what
workflow code must not do (anything non-deterministic outside these helpers).
"""

from __future__ import annotations

import random as _random
import time as _time
import uuid as _uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fleet import _context
from fleet.workflows._errors import DivergenceError, SignalTimeoutError, WorkflowError
from fleet.workflows._extension import Workflows, WorkflowTask
from fleet.workflows._history import Event, HistoryConflictError, HistoryStore
from fleet.workflows._run import WorkflowRun
from fleet.workflows._runtime import WorkflowRuntime, current_runtime, task_run
from fleet.workflows._stores import drop, history_store

T = TypeVar("T")


def _runtime(helper: str) -> WorkflowRuntime:
    runtime = current_runtime.get()
    if runtime is None:
        raise WorkflowError(f"wf.{helper}() is only available inside a workflow")
    return runtime


def now() -> datetime:
    """The current time (UTC), recorded: a replay returns the first execution's."""
    return datetime.fromtimestamp(_runtime("now").value("now", _time.time), UTC)


def uuid4() -> _uuid.UUID:
    """A random UUID, recorded."""
    return _uuid.UUID(_runtime("uuid4").value("uuid4", lambda: _uuid.uuid4().hex))


def random() -> float:
    """A random float in [0, 1), recorded."""
    return float(_runtime("random").value("random", _random.random))


def side_effect(fn: Callable[[], T]) -> T:
    """Call `fn` once and record its value (it must be encodable); a replay returns the
    recorded value without calling `fn`."""
    if not callable(fn):
        raise WorkflowError(f"wf.side_effect() needs a callable, got {fn!r}")
    value: T = _runtime("side_effect").value("side_effect", fn)
    return value


def version(marker: str, current: int) -> int:
    """The code version to follow at this point: `current` for a new execution, the
    recorded one on replay, 0 for a history recorded before the marker existed."""
    if not isinstance(marker, str) or not marker or isinstance(current, bool):
        raise WorkflowError(f"wf.version(): a marker name and an int, got {marker!r}, {current!r}")
    if not isinstance(current, int) or current < 1:
        raise WorkflowError(f"wf.version({marker!r}): version must be an int >= 1, got {current!r}")
    return _runtime("version").version(marker, current)


def set(key: str, value: Any) -> None:  # wf.set mirrors wf.get
    """Set a key of the run's workflow data (in the workflow or in a task it called)."""
    _check_key(key)
    runtime = current_runtime.get()
    if runtime is not None:
        runtime.set(key, value)
        return
    store, run, app = _task_scope("set")
    store.set_data(run, key, app.codec.encode(value))


def get(key: str, default: Any = None) -> Any:
    """A key of the run's workflow data (recorded as a step inside the workflow)."""
    _check_key(key)
    runtime = current_runtime.get()
    if runtime is not None:
        return runtime.get(key, default)
    store, run, app = _task_scope("get")
    found = store.data(run).get(key)
    return default if found is None else app.codec.decode(found)


def sleep(duration: timedelta | float) -> None:
    """Sleep durably: on a worker the attempt ends (no slot, thread or message held) and
    the workflow resumes when due; inline it sleeps in the thread."""
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise WorkflowError(f"wf.sleep(): a timedelta or seconds >= 0, got {duration!r}")
    _runtime("sleep").sleep(float(seconds))


def wait_signal(name: str, timeout: timedelta | float | None = None) -> Any:
    """Wait for the signal `name` (sent with `app.workflow_run(id).signal(name, payload)`)
    and return its payload; raise `SignalTimeoutError` after `timeout`."""
    if not isinstance(name, str) or not name:
        raise WorkflowError(f"wf.wait_signal(): a signal name, got {name!r}")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and (not isinstance(seconds, (int, float)) or seconds < 0):
        raise WorkflowError(f"wf.wait_signal(): timeout must be >= 0 or None, got {timeout!r}")
    return _runtime("wait_signal").wait_signal(name, seconds)


def run_id() -> str:
    """The run (workflow data namespace) of the running workflow or task."""
    runtime = current_runtime.get()
    if runtime is not None:
        return runtime.run
    return _task_scope("run_id")[1]


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise WorkflowError(f"workflow data keys are non-empty strings, got {key!r}")


def _task_scope(helper: str) -> tuple[HistoryStore, str, Any]:
    """(store, run, app) for a task that a workflow called."""
    from fleet.workflows._extension import current_workflows

    ext = current_workflows()
    if ext is None or ext.app is None:
        raise WorkflowError(f"wf.{helper}() is only available in a workflow or a task it calls")
    app = ext.app
    store = ext.store()
    run = task_run.get()
    execution = _context.current()
    if not run and execution is not None:
        run = ext.resolve_run(execution.invocation_id)
    if not run:
        raise WorkflowError(f"wf.{helper}(): this task was not called by a workflow")
    return store, run, app


__all__ = [
    "DivergenceError",
    "Event",
    "HistoryConflictError",
    "HistoryStore",
    "SignalTimeoutError",
    "WorkflowError",
    "WorkflowRun",
    "WorkflowTask",
    "Workflows",
    "drop",
    "get",
    "history_store",
    "now",
    "random",
    "run_id",
    "set",
    "side_effect",
    "sleep",
    "uuid4",
    "version",
    "wait_signal",
]
