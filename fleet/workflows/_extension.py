"""`Workflows`: the workflow capability behind the hooks, and `@app.workflow`.

Job: turn a function into a workflow (a task whose body runs under the replaying
runtime, `fleet.workflows._runtime`), find the history store beside the state store,
give handles on runs (`app.workflow_run(id)`), cascade cancellation and wake workflows
waiting for a signal.

Contract:
- A workflow is a `Task` (`WorkflowTask`): calling it returns an `Invocation`; its id is
  the workflow invocation's history id. Its run (the namespace of workflow data) is the
  run of the workflow that called it, else its own id; `force_new_workflow=True` gives a
  workflow called from another a run of its own.
- `after_change`: a cancelled invocation with a history cancels the children that history
  records (a sub-workflow's cancel cascades in turn); a workflow suspended to wait for a
  signal that was sent meanwhile is released at once (the sender releases it too: one
  of the two sees the other's write, and the release is a compare-and-set).
- Inline mode: histories live in a store of the app's own, in memory.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from fleet import _context
from fleet._prepare import new_id
from fleet.errors import TaskDefinitionError
from fleet.extensions import Applied, AppliedChange, Extension
from fleet.status import Status
from fleet.task import Task
from fleet.workflows._history import HistoryStore
from fleet.workflows._memory import MemoryHistoryStore
from fleet.workflows._run import WorkflowRun
from fleet.workflows._runtime import WorkflowRuntime, current_runtime, inline_id, task_run
from fleet.workflows._stores import history_store

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger("fleet.workflows")
FORCE_NEW = "force_new_workflow"
SIGNAL_NOTE = "suspended: waiting for signal "
MAX_DEPTH = 16
"""Parents walked up to find the run of a task."""
_scope: ContextVar[Workflows | None] = ContextVar("fleet_workflows_scope", default=None)


def current_workflows() -> Workflows | None:
    """The workflows extension of the app whose workflow or task runs in this context."""
    found = _scope.get()
    if found is not None:
        return found
    # A task on a worker: its executor knows the app. (Not an around_call hook: that
    # would cost every task of every app a hook call for the few that read wf data.)
    execution = _context.current()
    app = getattr(execution.pauser, "app", None) if execution is not None else None
    dispatcher = getattr(app, "dispatcher", None)
    owner = dispatcher.option_owners.get(FORCE_NEW) if dispatcher is not None else None
    return owner if isinstance(owner, Workflows) else None


class WorkflowTask(Task[Any, Any]):
    """A workflow: a task whose body runs under the replaying runtime."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.app.settings.inline and _context.submitter() is None:
            invocation_id = new_id()
            token = inline_id.set(invocation_id)
            try:
                return self.app.submit(self, [self.bind(args, kwargs)], ids=[invocation_id])[0]
            finally:
                inline_id.reset(token)
        return super().__call__(*args, **kwargs)


class Workflows(Extension):
    """See the module docstring."""

    task_options: ClassVar[frozenset[str]] = frozenset({FORCE_NEW})

    def __init__(self) -> None:
        self.app: Fleet | None = None
        self._inline_store = MemoryHistoryStore()

    def bind(self, app: Any) -> None:
        self.app = app

    def _app(self) -> Fleet:
        if self.app is None:
            raise TaskDefinitionError("the workflows extension is not bound to an app")
        return self.app

    def store(self) -> HistoryStore:
        """The history store of this app (beside its state store; inline: in memory)."""
        app = self._app()
        if app.settings.inline:
            return self._inline_store
        return history_store(app.runtime().state)

    def decorate(self, func: Callable[..., Any] | None, options: dict[str, Any]) -> Any:
        force = options.get(FORCE_NEW, False)
        if not isinstance(force, bool):
            raise TaskDefinitionError(f"{FORCE_NEW} must be True or False, got {force!r}")

        def wrap(f: Callable[..., Any]) -> WorkflowTask:
            if not callable(f) or inspect.isclass(f) or inspect.iscoroutinefunction(f):
                raise TaskDefinitionError(f"@workflow needs a plain function, got {f!r}")

            def body(*args: Any, **kwargs: Any) -> Any:
                return self.execute(f, force, args, kwargs)

            functools.update_wrapper(body, f)
            body.fleet_workflow = (f, force)  # type: ignore[attr-defined]  # for replay()
            task: WorkflowTask = self._app()._decorate(WorkflowTask, body, options)
            return task

        return wrap if func is None else wrap(func)

    def run_of(self, history: str, task: str) -> str:
        """The run (data namespace) of the workflow invocation `history` of `task`."""
        if self._app().settings.inline:  # no records inline: the recorded membership
            return history if self.forced(task) else self.store().run_of(history) or history
        return self.resolve_run(history, self.forced(task)) or history

    def forced(self, task: str) -> bool:
        known = self._app().tasks.get(task)
        return bool(known is not None and known.options.extensions.get(FORCE_NEW))

    def resolve_run(self, invocation_id: str, force: bool = False) -> str:
        """The run of an invocation ('' for none): a force-new workflow's own id; else
        the run its parent's history records for it; else its parent's run (a child may
        start before its step is recorded); else its own id if it is a workflow."""
        app, store = self._app(), self.store()
        current = invocation_id
        for _ in range(MAX_DEPTH):
            if force:
                return current
            found = store.run_of(current)
            if found:
                return found
            record = app.record(current)
            if not record.parent:
                workflow = isinstance(app.tasks.get(record.task), WorkflowTask)
                return current if workflow or store.load(current) else ""
            current = record.parent
            force = self.forced(app.record(current).task)
        return ""

    def execute(
        self,
        func: Callable[..., Any],
        force: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        replay: str = "",
    ) -> Any:
        """Run one attempt of a workflow's body under its replaying runtime; with
        `replay` (a workflow invocation id), only replay that recorded history here."""
        app = self._app()
        execution = None if replay else _context.current()
        store = self.store()
        if replay:
            history, attempt = replay, 1
        elif execution is None:  # inline
            history, attempt = inline_id.get() or new_id(), 1
        else:
            history, attempt = execution.invocation_id, execution.attempt
        if force:
            run = history
        elif execution is None and not replay:  # inline: the calling workflow's run
            run = task_run.get() or history
        else:
            run = self.resolve_run(history) or history
        runtime = WorkflowRuntime(
            app,
            store,
            history,
            run,
            attempt=attempt,
            inline=execution is None and not replay,
            replay_only=bool(replay),
        )
        tokens = (current_runtime.set(runtime), _context.intercept(runtime), task_run.set(run))
        scope = _scope.set(self)
        try:
            return func(*args, **kwargs)
        finally:
            _scope.reset(scope)
            task_run.reset(tokens[2])
            _context.release(tokens[1])
            current_runtime.reset(tokens[0])

    def run(self, run_id: str) -> WorkflowRun:
        return WorkflowRun(self._app(), self, run_id)

    # -- hooks ---------------------------------------------------------------------------

    def after_change(self, applied: Applied) -> None:
        for change in applied.changes:
            if change.status is Status.CANCELLED:
                self._cancel_children(change)
            elif change.status is Status.RETRY and change.note.startswith(SIGNAL_NOTE):
                self._recheck_signal(change)

    def _cancel_children(self, change: AppliedChange) -> None:
        app = self._app()
        if app.settings.inline:
            return
        events = self.store().load(change.invocation_id)
        children = [i for e in events for i in e.ids]
        if not children:
            return
        pending = [r.id for r in app.runtime().state.get(children) if not r.status.final]
        log.info(
            "workflow %s cancelled: cancelling %d pending child(ren)",
            change.invocation_id,
            len(pending),
            extra={"invocation_id": change.invocation_id, "task": change.task},
        )
        for child in pending:
            app.cancel(child, by=f"workflow {change.invocation_id} cancelled")

    def _recheck_signal(self, change: AppliedChange) -> None:
        rest = change.note[len(SIGNAL_NOTE) :]  # "'name' #n"
        name, _, number = rest.rpartition(" #")
        try:
            wanted, taken = eval_name(name), int(number)
        except ValueError:
            return
        if len(self.store().signals(change.invocation_id, wanted)) > taken:
            self.wake(change.invocation_id, "a signal came while it was suspending")

    def wake(self, history: str, why: str) -> bool:
        """Release a suspended workflow invocation now (False if it is not suspended)."""
        from fleet.worker.recovery import requeue

        app = self._app()
        records = [r for r in app.runtime().state.get([history]) if r.status is Status.RETRY]
        return requeue(app, records, "workflows", why) > 0


def eval_name(quoted: str) -> str:
    """The signal name from its repr in a suspension note."""
    if len(quoted) < 2 or quoted[0] not in "'\"" or quoted[-1] != quoted[0]:
        raise ValueError(quoted)
    import ast

    value = ast.literal_eval(quoted)
    if not isinstance(value, str):
        raise ValueError(quoted)
    return value
