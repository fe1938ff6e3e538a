"""Trigger definitions, firings and composite hits kept in memory, for `MemoryStateStore`.

Job: implement `TriggerStore` on the dicts of a memory state store's shared data.
Contract: the store provides `_trigger_home()`, returning the lock that guards its data
and the `TriggerTables` inside it; every method holds that lock, so stores sharing one
`memory://name` see the same definitions and a firing key is recorded once.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

from fleet.triggers import (
    Firing,
    Hit,
    Kind,
    TriggerDefinition,
    TriggerStore,
    check_kind,
    firing_order,
    matches,
    newest_first,
)


@dataclass
class TriggerTables:
    definitions: dict[str, TriggerDefinition] = field(default_factory=dict)
    firings: dict[str, dict[str, Firing]] = field(default_factory=dict)
    hits: dict[str, dict[tuple[int, str], Hit]] = field(default_factory=dict)


class MemoryTriggers(TriggerStore):
    """Mixin for `MemoryStateStore`."""

    def _trigger_home(self) -> tuple[threading.Lock, TriggerTables]:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def save_trigger(self, definition: TriggerDefinition) -> None:
        lock, tables = self._trigger_home()
        with lock:
            tables.definitions[definition.id] = definition

    def delete_trigger(self, trigger_id: str) -> bool:
        lock, tables = self._trigger_home()
        with lock:
            tables.firings.pop(trigger_id, None)
            tables.hits.pop(trigger_id, None)
            return tables.definitions.pop(trigger_id, None) is not None

    def triggers(
        self, kind: Kind | str | None = None, task: str | None = None, event: str | None = None
    ) -> list[TriggerDefinition]:
        wanted = check_kind(kind)
        lock, tables = self._trigger_home()
        with lock:
            found = [d for d in tables.definitions.values() if matches(d, wanted, task, event)]
        return sorted(found, key=lambda d: (d.created, d.id))

    def record_firing(self, firing: Firing) -> bool:
        lock, tables = self._trigger_home()
        with lock:
            fired = tables.firings.setdefault(firing.trigger, {})
            if firing.key in fired:
                return False
            fired[firing.key] = firing
            return True

    def firings(self, trigger_id: str, limit: int = 100) -> list[Firing]:
        lock, tables = self._trigger_home()
        with lock:
            found = list(tables.firings.get(trigger_id, {}).values())
        return newest_first(found, limit)

    def settle_firing(self, trigger_id: str, key: str, error: str = "") -> None:
        lock, tables = self._trigger_home()
        with lock:
            fired = tables.firings.get(trigger_id, {})
            if key in fired:
                fired[key] = dataclasses.replace(fired[key], pending=False, error=error)

    def pending_firings(self, before: float, limit: int = 100) -> list[Firing]:
        lock, tables = self._trigger_home()
        with lock:
            found = [
                f
                for fired in tables.firings.values()
                for f in fired.values()
                if f.pending and f.fired_at < before
            ]
        return firing_order(found, limit)

    def record_hit(self, hit: Hit, forget_before: float = 0.0) -> bool:
        lock, tables = self._trigger_home()
        with lock:
            kept = tables.hits.setdefault(hit.trigger, {})
            for old in [k for k, h in kept.items() if h.at < forget_before]:
                del kept[old]
            if (hit.part, hit.key) in kept:
                return False
            kept[(hit.part, hit.key)] = hit
            return True

    def hits(self, trigger_id: str, since: float) -> list[Hit]:
        lock, tables = self._trigger_home()
        with lock:
            found = [h for h in tables.hits.get(trigger_id, {}).values() if h.at >= since]
        return sorted(found, key=lambda h: (h.at, h.part, h.key))
