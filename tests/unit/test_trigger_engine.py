"""The trigger engine (fleet.triggers._engine.TriggerExtension) on memory stores with an
injectable clock: outcome, event, composite and cron triggers fire once per occurrence,
and recovery submits a firing recorded but never submitted. No I/O, no waiting."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from fleet.codec import encode_call, get_codec
from fleet.extensions import Applied, AppliedChange, Dispatcher
from fleet.state import ErrorInfo, memory
from fleet.status import Status
from fleet.triggers import Firing, TriggerStore, trigger_store
from fleet.triggers._declare import Trigger, declare
from fleet.triggers._engine import TriggerExtension

MSGPACK = get_codec("msgpack")
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()


def load(rows: int, region: str = "eu") -> None: ...


SIGNATURES = {"pkg.load": inspect.signature(load)}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Fleet:
    """What phase 2 will pass: the app's submit, and the state store's lookups."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = []
        self.registered: set[str] = set()
        self.fail: Exception | None = None
        self.args_loaded: list[str] = []

    def submit(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], inv: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.submitted.append((task, args, kwargs, inv))
        self.registered.add(inv)

    def load_args(self, invocation_id: str) -> bytes:
        self.args_loaded.append(invocation_id)
        return encode_call(MSGPACK, "pkg.extract", (), {"region": "eu"})


@pytest.fixture
def url() -> Iterator[str]:
    name = f"engine-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}"
    memory.drop(name)


@pytest.fixture
def store(url: str) -> TriggerStore:
    return trigger_store(memory.MemoryStateStore(url))


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


def engine(store: TriggerStore, fleet: Fleet, clock: Clock, **options: Any) -> TriggerExtension:
    return TriggerExtension(
        store,
        fleet.submit,
        exists=fleet.registered.__contains__,
        signature=SIGNATURES.get,
        load_args=fleet.load_args,
        clock=clock,
        **options,
    )


def success(inv: str, task: str = "pkg.extract", result: Any = 3, at: float = 0.0) -> Applied:
    args = encode_call(MSGPACK, task, (), {"region": "eu"})
    change = AppliedChange(
        inv, task, Status.RUNNING, Status.SUCCESS, args, "msgpack", MSGPACK.encode(result), at=at
    )
    return Applied((change,))


def test_a_result_trigger_fires_once_per_source(
    store: TriggerStore, fleet: Fleet, clock: Clock, url: str
) -> None:
    declare(
        store,
        [Trigger.on_result("pkg.extract", derive={"rows": "result"}).definition("pkg.load")],
        NOON,
    )
    first, second = engine(store, fleet, clock), engine(memory.MemoryStateStore(url), fleet, clock)
    first.after_change(success("inv-a", result=12))
    second.after_change(success("inv-a", result=12))  # the same change seen elsewhere
    first.after_change(success("inv-a", result=12))  # or twice
    assert [(t, a, k) for t, a, k, _ in fleet.submitted] == [("pkg.load", (), {"rows": 12})]
    (firing,) = store.firings(store.triggers()[0].id)
    assert (firing.key, firing.source, firing.invocation) == (
        "inv-a",
        "inv-a",
        fleet.submitted[0][3],
    )
    assert not firing.pending and firing.error == ""
    first.after_change(success("inv-b", result=13))
    assert len(fleet.submitted) == 2


def test_unwatched_tasks_cost_no_store_round_trip(
    store: TriggerStore, fleet: Fleet, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    definitions = [Trigger.on_result(f"pkg.t{i}").definition("pkg.load") for i in range(100)]
    declare(store, definitions, NOON)
    calls: list[str] = []

    def counted(name: str) -> Any:
        method = getattr(store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return method(*args, **kwargs)

        return call

    for name in ("triggers", "record_firing", "record_hit", "hits", "firings"):
        monkeypatch.setattr(store, name, counted(name))
    ext = engine(store, fleet, clock, refresh=5.0)
    for i in range(200):
        ext.after_change(success(f"inv-{i}", task="pkg.unwatched"))
    assert calls == ["triggers"]  # the watched set, loaded once
    clock.now += 6
    ext.after_change(success("inv-x", task="pkg.unwatched"))
    assert calls == ["triggers", "triggers"]  # reloaded after `refresh` seconds
    assert fleet.submitted == []


def test_the_watched_set_follows_changes(store: TriggerStore, fleet: Fleet, clock: Clock) -> None:
    ext = engine(store, fleet, clock, refresh=60.0)
    ext.after_change(success("inv-0"))  # loads an empty watched set
    (d,) = declare(
        store,
        [Trigger.on_status("pkg.extract", "SUCCESS", kwargs={"rows": 1}).definition("pkg.load")],
        NOON,
    )
    ext.after_change(success("inv-1"))
    assert fleet.submitted == []  # not seen yet: cached
    ext.invalidate()
    ext.after_change(success("inv-2"))
    assert len(fleet.submitted) == 1
    store.save_trigger(replace(d, enabled=False))  # paused
    ext.invalidate()
    ext.after_change(success("inv-3"))
    assert len(fleet.submitted) == 1


def test_arguments_are_loaded_only_when_a_filter_needs_them(
    store: TriggerStore, fleet: Fleet, clock: Clock
) -> None:
    declare(
        store,
        [Trigger.on_status("pkg.extract", "FAILED", kwargs={"rows": 1}).definition("pkg.load")],
        NOON,
    )
    declare(
        store,
        [
            Trigger.on_exception("pkg.extract", KeyError, where={"region": "eu"}).definition(
                "pkg.other"
            )
        ],
        NOON,
    )
    ext = engine(store, fleet, clock)
    bare = AppliedChange("inv-1", "pkg.extract", Status.RUNNING, Status.FAILED)
    ext.after_change(Applied((bare,)))
    assert fleet.args_loaded == [] and [s[0] for s in fleet.submitted] == ["pkg.load"]
    error = ErrorInfo("builtins.KeyError", "k")
    ext.after_change(Applied((replace(bare, invocation_id="inv-2", error=error),)))
    assert fleet.args_loaded == ["inv-2"]
    assert [s[0] for s in fleet.submitted] == ["pkg.load", "pkg.load", "pkg.other"]


def test_events_fire_once_per_emit(store: TriggerStore, fleet: Fleet, clock: Clock) -> None:
    trigger = Trigger.on_event("order.paid", {"ok": True}, derive={"rows": "payload.order_id"})
    declare(store, [trigger.definition("pkg.load")], NOON)
    ext = engine(store, fleet, clock)
    ids = [ext.emit("order.paid", {"order_id": i, "ok": True}) for i in range(5)]
    ext.emit("order.paid", {"order_id": 99, "ok": False})
    ext.emit("order.sent", {"order_id": 98, "ok": True})
    assert len(set(ids)) == 5
    assert [k["rows"] for _, _, k, _ in fleet.submitted] == [0, 1, 2, 3, 4]
    sources = {f.source for f in store.firings(store.triggers()[0].id)}
    assert sources == {f"event:order.paid:{i}" for i in ids}
    with pytest.raises(Exception, match="''"):
        ext.emit("")


def test_a_call_that_cannot_be_built_is_recorded_and_the_trigger_stays_active(
    store: TriggerStore, fleet: Fleet, clock: Clock
) -> None:
    (d,) = declare(
        store, [Trigger.on_event("e", derive={"rows": "payload.n"}).definition("pkg.load")], NOON
    )
    ext = engine(store, fleet, clock)
    ext.emit("e", {"m": 1})  # no 'n'
    ext.emit("e", {"n": object()})  # cannot be encoded
    ext.emit("e", {"n": 5})
    assert [k for _, _, k, _ in fleet.submitted] == [{"rows": 5}]
    errors = sorted(f.error for f in store.firings(d.id) if f.error)
    assert len(errors) == 2
    assert any("'payload' has no 'n'" in e for e in errors)
    assert any("argument 'rows' has type 'object'" in e for e in errors)
    assert all(f.invocation == "" for f in store.firings(d.id) if f.error)


def test_a_failed_submit_is_recorded(store: TriggerStore, fleet: Fleet, clock: Clock) -> None:
    (d,) = declare(store, [Trigger.on_event("e", kwargs={"rows": 1}).definition("pkg.load")], NOON)
    fleet.fail = ConnectionError("broker down")
    engine(store, fleet, clock).emit("e")
    (firing,) = store.firings(d.id)
    assert firing.error == "ConnectionError: broker down" and not firing.pending


def test_all_of_fires_when_every_part_is_hit_within_the_window(
    store: TriggerStore, fleet: Fleet, clock: Clock
) -> None:
    both = Trigger.all_of(
        Trigger.on_result("pkg.a"), Trigger.on_event("approved"), within=600, kwargs={"rows": 0}
    )
    (d,) = declare(store, [both.definition("pkg.load")], NOON)
    ext = engine(store, fleet, clock)
    ext.after_change(success("a1", task="pkg.a", at=NOON))
    clock.now = NOON + 700
    ext.emit("approved")  # a1 is too old
    assert fleet.submitted == []
    ext.after_change(success("a2", task="pkg.a", at=NOON + 710))
    assert len(fleet.submitted) == 1
    ext.after_change(success("a2", task="pkg.a", at=NOON + 711))  # the same source again
    assert len(fleet.submitted) == 1
    (firing,) = store.firings(d.id)
    assert firing.key.startswith("a2+")


def test_any_of_fires_once_per_source(store: TriggerStore, fleet: Fleet, clock: Clock) -> None:
    either = Trigger.any_of(
        Trigger.on_result("pkg.a"), Trigger.on_status("pkg.a", "SUCCESS"), kwargs={"rows": 0}
    )
    declare(store, [either.definition("pkg.load")], NOON)
    ext = engine(store, fleet, clock)
    ext.after_change(success("a1", task="pkg.a"))  # meets both parts: fires once
    ext.after_change(success("a2", task="pkg.a"))
    assert len(fleet.submitted) == 2


def test_cron_fires_each_tick_once_across_leaders(
    store: TriggerStore, fleet: Fleet, clock: Clock, url: str
) -> None:
    (d,) = declare(
        store, [Trigger.cron("* * * * *", kwargs={"rows": 1}).definition("pkg.load")], NOON - 1
    )
    a, b = engine(store, fleet, clock), engine(memory.MemoryStateStore(url), fleet, clock)
    for second in range(0, 181, 15):  # three minutes, two leaders both ticking
        clock.now = NOON + second
        a.on_lead(clock.now)
        b.on_lead(clock.now)
    keys = sorted(f.key for f in store.firings(d.id))
    assert keys == [
        "2026-03-02T12:00:00+00:00",
        "2026-03-02T12:01:00+00:00",
        "2026-03-02T12:02:00+00:00",
        "2026-03-02T12:03:00+00:00",
    ]
    assert len(fleet.submitted) == 4
    assert all(f.source == f"cron:{f.key}" for f in store.firings(d.id))


@pytest.mark.parametrize(("catchup", "fired"), [("skip", 1), ("once", 2), ("all", 12)])
def test_a_new_leader_catches_up_by_policy(
    store: TriggerStore, fleet: Fleet, clock: Clock, catchup: str, fired: int
) -> None:
    (d,) = declare(
        store,
        [Trigger.cron("* * * * *", catchup=catchup, kwargs={"rows": 1}).definition("pkg.load")],
        NOON - 1,
    )
    engine(store, fleet, clock).on_lead(NOON)  # fires 12:00, then this leader dies
    clock.now = NOON + 11 * 60 + 30  # 12:01 .. 12:11 missed; 12:11 is 30 s late
    engine(store, fleet, clock, on_time=10.0).on_lead(clock.now)
    keys = sorted(f.key for f in store.firings(d.id))
    assert len(keys) == fired == len(fleet.submitted)
    assert keys[0] == "2026-03-02T12:00:00+00:00"
    if catchup != "skip":
        assert keys[-1] == "2026-03-02T12:11:00+00:00"


def test_a_firing_recorded_but_never_submitted_is_recovered(
    store: TriggerStore, fleet: Fleet, clock: Clock
) -> None:
    (d,) = declare(store, [Trigger.on_event("e").definition("pkg.load")], NOON)
    call = encode_call(MSGPACK, "pkg.load", (), {"rows": 7})
    # An evaluator recorded these, then died before (or after) submitting.
    store.record_firing(Firing(d.id, "lost", NOON, "inv-lost", "event:e:1", "", call, True))
    store.record_firing(Firing(d.id, "sent", NOON, "inv-sent", "event:e:2", "", call, True))
    fleet.registered.add("inv-sent")
    ext = engine(store, fleet, clock, grace=30.0)
    ext.on_lead(NOON + 10)  # too early: the evaluator may still be submitting
    assert fleet.submitted == []
    ext.on_lead(NOON + 31)
    assert fleet.submitted == [("pkg.load", (), {"rows": 7}, "inv-lost")]
    assert store.pending_firings(before=NOON + 100) == []
    ext.on_lead(NOON + 100)
    assert len(fleet.submitted) == 1


def test_manual_fire_and_the_dispatcher(store: TriggerStore, fleet: Fleet, clock: Clock) -> None:
    (d,) = declare(
        store, [Trigger.cron("@yearly", kwargs={"rows": 2}).definition("pkg.load")], NOON
    )
    ext = engine(store, fleet, clock)
    assert ext.fire(d.id) == fleet.submitted[0][3]
    with pytest.raises(Exception, match="'nope'"):
        ext.fire("nope")
    dispatcher = Dispatcher([ext])
    assert dispatcher.after_change_hooks == (ext,) and dispatcher.on_lead_hooks == (ext,)
    assert dispatcher.option_owners == {"triggers": ext}


def test_the_leader_sweeps_outcomes_whose_committer_died(
    store: TriggerStore, fleet: Fleet, clock: Clock
) -> None:
    declare(
        store, [Trigger.on_result("pkg.extract", kwargs={"rows": 1}).definition("pkg.load")], NOON
    )
    asked: list[tuple[list[str], float, float]] = []
    committed = [
        success("inv-1", at=NOON - 100).changes[0],
        success("inv-2", at=NOON - 50).changes[0],
    ]

    def recent(tasks: Any, since: float, until: float) -> list[AppliedChange]:
        asked.append((list(tasks), since, until))
        return [c for c in committed if since <= c.at < until]

    ext = engine(store, fleet, clock, grace=30.0, recent=recent)
    ext.after_change(Applied((committed[1],)))  # inv-2's committer evaluated it; inv-1's died
    assert len(fleet.submitted) == 1
    ext.on_lead(NOON)
    assert asked == [(["pkg.extract"], NOON - 150, NOON - 30)]
    assert sorted(f.key for f in store.firings(store.triggers()[0].id)) == ["inv-1", "inv-2"]
    assert len(fleet.submitted) == 2  # inv-2 was not fired twice
    ext.on_lead(NOON + 15)
    assert asked[-1][1:] == (NOON - 30, NOON - 15)  # the next window follows on


def test_recovery_racing_a_slow_first_submit_starts_one_invocation(
    store: TriggerStore, fleet: Fleet, clock: Clock
) -> None:
    (d,) = declare(store, [Trigger.on_event("e").definition("pkg.load")], NOON)
    call = encode_call(MSGPACK, "pkg.load", (), {"rows": 7})
    store.record_firing(Firing(d.id, "slow", NOON, "inv-slow", "event:e:1", "", call, True))

    def duplicate(task: str, args: Any, kwargs: Any, inv: str) -> None:
        fleet.registered.add(inv)  # the first submit registered it meanwhile
        raise RuntimeError(f"invocation {inv!r} exists")

    ext = engine(store, fleet, clock, grace=30.0)
    ext.submit = duplicate
    ext.on_lead(NOON + 31)
    (firing,) = store.firings(d.id)
    assert (firing.pending, firing.error) == (False, "")
