"""The trigger engine as an app's built-in extension, created with the process's runtime.

Job: `AppTriggers` is the extension every `Fleet` is built with
(`fleet.extensions.BUILTIN`). It owns the task option `triggers` and builds, on first
use in a process, the engine (`TriggerExtension`) over the app's state store, wiring
it to the app: submitting by task name under a chosen id, reading invocation records,
resolving large values, and reading recent outcomes for the leader's sweep.

Contract:
- Building an app opens nothing. The engine is built on first use in each process
  (a status change, a leader tick, `emit`, `app.triggers`), again in a forked child.
- Inline mode: the engine runs over an in-process memory store (nothing is written
  anywhere; triggers added at run time live as long as the app object); outcome and
  event triggers fire inline, in the thread that ran the source, before its call
  returns; cron triggers never tick (no leader runs).
- The triggers declared on tasks (`@app.task(triggers=[...])`) are declared in the
  store (`Triggers.declare`, idempotent) when the engine is built, and again for tasks
  registered since; a value that is not a list of `Trigger` is logged and skipped.
- The leader's sweep (`TriggerExtension.sweep`) reads the final invocations of watched
  tasks last updated in its window (`Query.updated_after` / `updated_before`).
- `submit(task, args, kwargs, id)` calls the task registered under that name (else by
  name, unchecked, as `app.send` does) under the id the engine chose; a registered id
  is refused by the state store, so a recovery racing a slow first submit starts one.
  The triggered call is top-level (no parent), even when fired in a task's thread.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from fleet import _context, _values
from fleet.errors import ConfigError
from fleet.extensions import Applied, AppliedChange, Extension
from fleet.state import Query
from fleet.status import Status
from fleet.task import TaskRef
from fleet.triggers import Trigger, trigger_store
from fleet.triggers._engine import TriggerExtension
from fleet.triggers._registry import Triggers

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.state import StateStore

log = logging.getLogger("fleet.triggers")


class AppTriggers(Extension):
    """Triggers of one app; see the module docstring."""

    task_options: ClassVar[frozenset[str]] = frozenset({"triggers"})

    def __init__(self) -> None:
        self._app: Fleet | None = None
        self._lock = threading.RLock()
        self._engine: TriggerExtension | None = None
        self._store: StateStore | None = None
        self._pid = 0
        self._tasks = -1
        """How many tasks the app had when their triggers were last declared."""
        self._inline_store: StateStore | None = None

    @property
    def app(self) -> Fleet:
        if self._app is None:
            raise ConfigError("the trigger extension is not bound to an app")
        return self._app

    def bind(self, app: Any) -> None:
        self._app = app

    # -- hooks -----------------------------------------------------------------------------

    def after_change(self, applied: Applied) -> None:
        self.engine().after_change(applied)

    def on_lead(self, now: float) -> None:
        self.engine().on_lead(now)

    # -- what the app exposes --------------------------------------------------------------

    def emit(self, name: str, payload: Mapping[str, Any] | None = None) -> str:
        return self.engine().emit(name, payload)

    def registry(self) -> Triggers:
        engine = self.engine()
        return Triggers(engine.store, changed=engine.invalidate, fire=engine.fire)

    # -- the engine ------------------------------------------------------------------------

    def engine(self) -> TriggerExtension:
        """This process's engine, built on first use; see the module docstring."""
        engine = self._engine
        if engine is None or self._pid != os.getpid():
            with self._lock:
                if self._engine is None or self._pid != os.getpid():
                    self._engine, self._pid, self._tasks = self._build(), os.getpid(), -1
                engine = self._engine
        if self._tasks != len(self.app.tasks):
            self._declare(engine)
        return engine

    def _build(self) -> TriggerExtension:
        app = self.app
        if app.settings.inline:
            from fleet.state.memory import MemoryStateStore  # only inline mode needs it

            if self._inline_store is None:
                self._inline_store = MemoryStateStore(f"memory://fleet-inline-triggers-{id(self)}")
            return TriggerExtension(
                trigger_store(self._inline_store),
                self._submit,
                exists=self._exists_inline,
                signature=self._signature,
                codec=app.codec.name,
            )
        state = self._store = app.runtime().state
        return TriggerExtension(
            trigger_store(state),
            self._submit,
            exists=lambda invocation_id: bool(state.get([invocation_id])),
            signature=self._signature,
            load_args=self._load_args,
            resolve=lambda data: _values.resolve(state, data),
            recent=self._recent,
            codec=app.codec.name,
            grace=max(app.settings.trigger_grace, 0.1),
        )

    def _declare(self, engine: TriggerExtension) -> None:
        with self._lock:
            tasks = list(self.app.tasks.values())
            if self._tasks == len(tasks):
                return
            registry = Triggers(engine.store, changed=engine.invalidate)
            for task in tasks:
                given = task.options.extensions.get("triggers")
                if given is None:
                    continue
                if isinstance(given, Trigger):
                    given = [given]
                if not isinstance(given, list | tuple) or not all(
                    isinstance(t, Trigger) for t in given
                ):
                    log.error(
                        "task %s: triggers=%r is not a list of fleet.Trigger; ignored",
                        task.name,
                        given,
                        extra={"task": task.name},
                    )
                    continue
                try:
                    registry.declare(task.name, given)
                except Exception:
                    log.exception("cannot declare the triggers of %s", task.name)
                    return  # try again on next use
            self._tasks = len(tasks)

    # -- what the engine calls -------------------------------------------------------------

    def _submit(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], invocation_id: str
    ) -> object:
        app = self.app
        task = app.tasks.get(name) or TaskRef(app, name)
        # Not a child of the task whose thread fires it (an event emitted in a task, a
        # status change written while it runs): a triggered call stands on its own.
        token = _context.enter(None)
        try:
            return app.submit(task, [task.bind(args, kwargs)], ids=[invocation_id])
        finally:
            _context.leave(token)

    def _signature(self, name: str) -> inspect.Signature | None:
        task = self.app.tasks.get(name)
        return None if task is None else task.signature

    def _exists_inline(self, invocation_id: str) -> bool:
        try:
            self.app.invocation(invocation_id)
        except Exception:
            return False
        return True

    def _load_args(self, invocation_id: str) -> bytes | None:
        if self._store is None:
            return None
        found = self._store.get([invocation_id])
        return found[0].args if found else None

    def _recent(self, tasks: Sequence[str], since: float, until: float) -> list[AppliedChange]:
        """Final changes of `tasks` committed in [since, until) (the leader's sweep)."""
        state = self._store
        if state is None:
            return []
        final = [s for s in Status if s.final]
        changes = []
        for task in tasks:
            query = Query(statuses=final, task=task, updated_after=since, updated_before=until)
            changes += [
                AppliedChange(
                    r.id,
                    r.task,
                    None,
                    r.status,
                    r.args,
                    r.codec,
                    r.result,
                    r.error,
                    parent=r.parent,
                    at=r.updated,
                )
                for r in state.find(query)
            ]
        return changes
