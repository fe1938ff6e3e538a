"""Declaring triggers (fleet.triggers._declare): builders, stable ids, idempotent and
replacing declarations, registered functions. Memory store only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fleet.codec import get_codec
from fleet.errors import ConfigError
from fleet.state.memory import MemoryStateStore
from fleet.status import Status
from fleet.triggers import Condition, Kind, trigger_store
from fleet.triggers._declare import (
    Trigger,
    declare,
    declare_for_task,
    function,
    resolve_function,
    trigger_id,
)

T0 = 1_700_000_000.0


class Named:
    name = "pkg.extract"


@function
def pick(source: Any) -> bool:
    return True


def test_builders_make_each_kind() -> None:
    assert Trigger.cron("*/5 * * * *", timezone="UTC").condition.kind is Kind.CRON
    s = Trigger.on_status(Named(), "FAILED", where={"region": "eu"}).condition
    assert (s.task, s.status, dict(s.where)) == ("pkg.extract", Status.FAILED, {"region": "eu"})
    assert Trigger.on_status("pkg.extract").condition.status is None
    r = Trigger.on_result("pkg.extract", 7).condition
    assert r.value is not None and get_codec("msgpack").decode(r.value) == 7
    assert Trigger.on_result("pkg.extract").condition.value is None
    e = Trigger.on_exception("pkg.extract", KeyError).condition
    assert e.exception == "builtins.KeyError"
    ev = Trigger.on_event("order.paid", {"ok": True}, check=pick).condition
    assert ev.check == f"{__name__}:pick"
    both = Trigger.all_of(Trigger.on_result("a"), Trigger.on_result("b"), within=600)
    assert both.condition.kind is Kind.ALL and both.condition.window == 600
    assert Trigger.any_of(Trigger.on_event("x"), Condition.on_event("y")).condition.kind is Kind.ANY


def test_bad_declarations_are_named() -> None:
    with pytest.raises(ConfigError, match="'colour'"):
        Trigger.cron("@hourly", colour="red")
    with pytest.raises(ConfigError, match="'sometimes'"):
        Trigger.cron("@hourly", catchup="sometimes")
    with pytest.raises(ConfigError, match="'Mars/Olympus'"):
        Trigger.cron("@hourly", timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="not a cron condition"):
        Trigger.all_of(Trigger.cron("@hourly"), Trigger.on_result("a"), within=60)
    with pytest.raises(ConfigError, match="needs window"):
        Trigger.all_of(Trigger.on_result("a"), within=0)
    with pytest.raises(ConfigError, match="module-level"):
        Trigger.on_event("x", check=lambda source: True)
    with pytest.raises(ConfigError, match=r"'rows'.*'results'"):
        Trigger.on_result("a", derive={"rows": "results"}).definition("pkg.load")
    with pytest.raises(ConfigError, match="42"):
        Trigger.on_result(42)


def test_ids_are_stable_and_depend_on_what_identifies_a_trigger() -> None:
    cron = Condition.on_cron("*/5 * * * *")
    assert trigger_id("pkg.report", cron) == trigger_id(
        "pkg.report", Condition.on_cron("*/5 * * * *")
    )
    assert trigger_id("pkg.report", cron) != trigger_id("pkg.other", cron)
    assert trigger_id("pkg.report", cron) != trigger_id("pkg.report", Condition.on_cron("@hourly"))
    named = trigger_id("pkg.report", cron, "nightly")
    assert named == trigger_id("pkg.report", Condition.on_cron("@daily"), "nightly")
    a = Trigger.on_result("a", kwargs={"x": 1}).definition("pkg.load")
    b = Trigger.on_result("a", kwargs={"x": 2}).definition("pkg.load")
    assert a.id == b.id and a.args != b.args  # what it calls changed: same trigger, replaced


def test_declaring_twice_is_idempotent_and_a_change_replaces() -> None:
    store = trigger_store(MemoryStateStore())
    first = Trigger.cron("*/5 * * * *", name="tick", kwargs={"n": 1}).definition("pkg.r")
    assert declare(store, [first], T0) == [replace(first, created=T0)]
    assert declare(store, [first], T0 + 10) == []  # every process declares it: no write
    store.save_trigger(replace(store.triggers()[0], enabled=False))  # paused
    changed = Trigger.cron("@hourly", name="tick", kwargs={"n": 2}).definition("pkg.r")
    (saved,) = declare(store, [changed], T0 + 20)
    assert saved.id == first.id and saved.condition.cron == "@hourly"
    assert (saved.created, saved.enabled) == (T0, False)  # kept: an operator paused it
    assert store.triggers() == [saved]


def test_declare_for_task_removes_what_the_task_no_longer_declares() -> None:
    store = trigger_store(MemoryStateStore())
    runtime = Trigger.on_event("deploy").definition("pkg.r")
    declare(store, [runtime], T0)
    old = [Trigger.cron("*/5 * * * *"), Trigger.on_result("pkg.a")]
    declare_for_task(store, "pkg.r", old, T0)
    declare_for_task(store, "pkg.other", [Trigger.cron("*/5 * * * *")], T0)
    assert len(store.triggers()) == 4
    new = [Trigger.cron("*/10 * * * *"), Trigger.on_result("pkg.a")]
    saved = declare_for_task(store, "pkg.r", new, T0 + 1)
    assert [d.condition.cron for d in saved] == ["*/10 * * * *"]
    crons = sorted((d.task, d.condition.cron) for d in store.triggers(kind="cron"))
    assert crons == [("pkg.other", "*/5 * * * *"), ("pkg.r", "*/10 * * * *")]
    assert runtime.id in {d.id for d in store.triggers()}  # added at run time: kept
    assert all(d.declared for d in store.triggers() if d.id != runtime.id)


def test_registered_functions_are_found_by_path() -> None:
    assert resolve_function(f"{__name__}:pick") is pick
    with pytest.raises(ConfigError, match="not registered"):
        resolve_function(f"{__name__}:Named")
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_x'"):
        resolve_function("no_such_module_x:f")
