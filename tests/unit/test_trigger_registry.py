"""Run-time management of triggers (fleet.triggers._registry.Triggers), memory store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleet.errors import ConfigError, TriggerNotFoundError
from fleet.state.memory import MemoryStateStore
from fleet.triggers import Firing, Trigger, trigger_store
from fleet.triggers._registry import Triggers

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()


def test_add_list_show_pause_resume_remove() -> None:
    store = trigger_store(MemoryStateStore())
    changes: list[int] = []
    triggers = Triggers(store, clock=lambda: NOON + 30, changed=lambda: changes.append(1))
    hourly = triggers.add("pkg.report", Trigger.cron("@hourly", kwargs={"n": 1}))
    assert triggers.add("pkg.report", Trigger.cron("@hourly", kwargs={"n": 1})) == hourly
    assert [d.id for d in triggers.list()] == [hourly.id]
    assert (hourly.created, hourly.declared) == (NOON + 30, False)
    store.record_firing(Firing(hourly.id, "2026-03-02T12:00:00+00:00", NOON, "inv-1"))
    shown = triggers.show(hourly.id)
    assert shown.next_time == NOON + 3600
    assert [f.invocation for f in shown.firings] == ["inv-1"]
    assert triggers.pause(hourly.id).enabled is False
    assert triggers.show(hourly.id).next_time is None
    assert triggers.resume(hourly.id).enabled is True
    event = triggers.add("pkg.report", Trigger.on_event("deploy"))
    assert triggers.show(event.id).next_time is None
    assert [d.id for d in triggers.list(kind="event")] == [event.id]
    assert triggers.remove(hourly.id) is True and triggers.remove(hourly.id) is False
    assert [d.id for d in triggers.list()] == [event.id]
    assert len(changes) == 7  # every change tells the engine
    with pytest.raises(TriggerNotFoundError, match="'nope'"):
        triggers.pause("nope")
    with pytest.raises(ConfigError, match=r"not a fleet\.triggers\.Trigger"):
        triggers.add("pkg.report", "@hourly")  # type: ignore[arg-type]


def test_declare_replaces_what_a_task_declared() -> None:
    triggers = Triggers(trigger_store(MemoryStateStore()), clock=lambda: NOON)
    triggers.declare("pkg.report", [Trigger.cron("@hourly"), Trigger.on_event("deploy")])
    triggers.declare("pkg.report", [Trigger.cron("@daily")])
    assert [d.condition.cron for d in triggers.list()] == ["@daily"]
