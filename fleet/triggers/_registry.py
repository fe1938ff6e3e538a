"""Managing triggers at run time: what `app.triggers` will be (phase 2 attaches it).

Job: add, declare, list, show, pause, resume and remove trigger definitions in a
`TriggerStore`, telling the engine to reload its watched set after each change.

Contract:
- `add(task, trigger)` saves a run-time trigger (idempotent: the same trigger added
  twice is one definition; a changed one with the same id replaces it) and returns its
  definition; `declare(task, triggers)` is what `@app.task(triggers=[...])` does in
  every process importing the task (see `declare_for_task`).
- `fire(id)` fires a trigger now through the engine (`fleet triggers fire ID`).
- `get`, `pause`, `resume` and `remove` name an unknown id in a `TriggerNotFoundError`
  (`remove` returns False instead, so it is idempotent).
- `show(id, now)` returns the definition, the next cron time (None for other kinds or
  a paused trigger) and the latest firings, newest first: what `fleet triggers show`
  and the status output print.
- Every change calls `changed()` (the engine's `invalidate`), so this process sees it at
  once; other processes see it within the engine's `refresh` period.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from fleet.errors import ConfigError, TriggerNotFoundError
from fleet.triggers import Firing, Kind, TriggerDefinition, TriggerStore
from fleet.triggers._cron import next_tick
from fleet.triggers._declare import Trigger, declare, declare_for_task


@dataclass(frozen=True, slots=True)
class TriggerStatus:
    """One trigger as `fleet triggers show` prints it."""

    definition: TriggerDefinition
    next_time: float | None
    firings: list[Firing]


class Triggers:
    """Run-time management of triggers; see the module docstring."""

    def __init__(
        self,
        store: TriggerStore,
        *,
        clock: Callable[[], float] = time.time,
        changed: Callable[[], None] = lambda: None,
        fire: Callable[[str], str | None] | None = None,
    ) -> None:
        self.store, self.clock, self.changed = store, clock, changed
        self._fire = fire

    def fire(self, trigger_id: str) -> str | None:
        """Fire a trigger now, whatever its condition; return the invocation id started
        (None if its call could not be built: the firing records why)."""
        if self._fire is None:
            raise ConfigError("these triggers cannot be fired from here (no engine)")
        return self._fire(trigger_id)

    def add(self, task: object, trigger: Trigger) -> TriggerDefinition:
        """Save `trigger` calling `task` (a task or its name); return its definition."""
        if not isinstance(trigger, Trigger):
            raise ConfigError(f"{trigger!r} is not a fleet.triggers.Trigger")
        definition = trigger.definition(task)
        declare(self.store, [definition], self.clock())
        self.changed()
        return self.get(definition.id)

    def declare(self, task: str, triggers: Sequence[Trigger]) -> list[TriggerDefinition]:
        """The triggers declared on `task`; see `declare_for_task`."""
        saved = declare_for_task(self.store, task, triggers, self.clock())
        self.changed()
        return saved

    def list(self, kind: Kind | str | None = None) -> list[TriggerDefinition]:
        return self.store.triggers(kind=kind)

    def get(self, trigger_id: str) -> TriggerDefinition:
        for definition in self.store.triggers():
            if definition.id == trigger_id:
                return definition
        raise TriggerNotFoundError(f"no trigger {trigger_id!r}; `fleet triggers list` shows them")

    def _enable(self, trigger_id: str, enabled: bool) -> TriggerDefinition:
        definition = replace(self.get(trigger_id), enabled=enabled)
        self.store.save_trigger(definition)
        self.changed()
        return definition

    def pause(self, trigger_id: str) -> TriggerDefinition:
        return self._enable(trigger_id, False)

    def resume(self, trigger_id: str) -> TriggerDefinition:
        return self._enable(trigger_id, True)

    def remove(self, trigger_id: str) -> bool:
        removed = self.store.delete_trigger(trigger_id)
        self.changed()
        return removed

    def show(self, trigger_id: str, limit: int = 10) -> TriggerStatus:
        definition = self.get(trigger_id)
        upcoming = None
        if definition.enabled and definition.condition.kind is Kind.CRON:
            upcoming = next_tick(definition.condition, self.clock())
        return TriggerStatus(definition, upcoming, self.store.firings(trigger_id, limit))
