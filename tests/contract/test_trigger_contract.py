"""The TriggerStore contract (fleet.triggers), run against every state store in STATES."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from fleet.errors import ConfigError
from fleet.state import StateStore
from fleet.status import Status
from fleet.triggers import (
    Condition,
    Firing,
    Hit,
    Kind,
    TriggerDefinition,
    TriggerStore,
    trigger_store,
)
from tests.processes import spawned

T0 = 1_700_000_000.25


@pytest.fixture
def store(state: StateStore) -> TriggerStore:
    return trigger_store(state)


def every_kind() -> list[TriggerDefinition]:
    conditions = [
        Condition.on_cron("*/5 * * * *"),
        Condition.on_status("pkg.extract", Status.FAILED),
        Condition.on_result("pkg.extract", b"\x93\x01\x02\x00"),
        Condition.on_result("pkg.load"),
        Condition.on_exception("pkg.extract", "builtins.ValueError"),
        Condition.on_event("upload", {"bucket": "in", "size": 3, "ratio": 0.5, "ok": True}),
        Condition.on_event("deploy"),
        Condition.on_cron("@hourly", timezone="Europe/Paris", catchup="all", limit=5),
        Condition.on_status("pkg.extract", where={"region": "eu", "n": 2}, check="pkg:pred"),
        Condition.all_of(
            [
                Condition.on_result("pkg.a", b"\xc3", where={"x": 1}),
                Condition.on_exception("pkg.b", "builtins.OSError"),
                Condition.on_event("paid", {"ok": True}),
            ],
            window=600.0,
        ),
        Condition.any_of([Condition.on_status("pkg.a", Status.CANCELLED)]),
    ]
    return [
        TriggerDefinition(
            id=f"t{i}",
            name=f"trigger {i}",
            condition=cond,
            task="pkg.notify",
            args=b"\x92\x90\x80" if i % 2 else b"",
            codec="msgpack" if i % 3 else "json",
            enabled=i != 4,
            created=T0 + 20 - i,
            derive={"order": "payload.order_id", "total": "result.total"} if i % 2 else {},
            function="pkg.fns:make_args" if i == 3 else "",
            declared=i % 3 == 0,
        )
        for i, cond in enumerate(conditions)
    ]


def test_definitions_round_trip_in_created_order(store: TriggerStore) -> None:
    defs = every_kind()
    for d in defs:
        store.save_trigger(d)
    assert store.triggers() == sorted(defs, key=lambda d: d.created)


def test_save_replaces_by_id(store: TriggerStore) -> None:
    first, second = every_kind()[:2]
    store.save_trigger(first)
    changed = TriggerDefinition(
        first.id, "renamed", second.condition, "pkg.other", enabled=False, created=first.created
    )
    store.save_trigger(changed)
    assert store.triggers() == [changed]


def test_filters(store: TriggerStore) -> None:
    for d in every_kind():
        store.save_trigger(d)

    def ids(**query: Any) -> list[str]:
        return sorted(d.id for d in store.triggers(**query))

    assert ids(kind="cron") == ["t0", "t7"]
    assert ids(kind=Kind.RESULT) == ["t2", "t3"]
    assert ids(task="pkg.extract") == ["t1", "t2", "t4", "t8"]
    assert ids(kind="status", task="pkg.extract") == ["t1", "t8"]
    assert ids(kind="all") == ["t9"]
    assert ids(kind=Kind.ANY) == ["t10"]
    assert ids(kind="status", task="pkg.load") == []
    assert ids(event="upload") == ["t5"]
    assert ids(kind="event") == ["t5", "t6"]
    assert ids(task="upload") == []  # an event name is not a task
    assert ids(kind="cron", event="deploy") == []
    with pytest.raises(ConfigError, match="'sometimes'"):
        store.triggers(kind="sometimes")


def test_a_firing_is_recorded_once(store: TriggerStore) -> None:
    store.save_trigger(every_kind()[0])
    tick = Firing("t0", "2025-01-01T00:05", T0, "inv-1")
    assert store.record_firing(tick) is True
    assert store.record_firing(Firing("t0", "2025-01-01T00:05", T0 + 1, "inv-2")) is False
    assert store.record_firing(Firing("t1", "2025-01-01T00:05", T0, "inv-3")) is True
    assert store.firings("t0") == [tick]


def test_firings_newest_first_with_limit(store: TriggerStore) -> None:
    fired = [Firing("t0", f"k{i:02d}", T0 + i, f"inv-{i}") for i in range(12)]
    for f in fired:
        assert store.record_firing(f)
    assert store.firings("t0", limit=5) == fired[::-1][:5]
    assert store.firings("t0", limit=0) == []
    assert store.firings("nobody") == []


def test_delete_removes_the_definition_and_its_firings(store: TriggerStore) -> None:
    defs = every_kind()
    for d in defs[:2]:
        store.save_trigger(d)
    store.record_firing(Firing("t0", "k", T0))
    store.record_firing(Firing("t1", "k", T0))
    assert store.delete_trigger("t0") is True
    assert store.delete_trigger("t0") is False
    assert [d.id for d in store.triggers()] == ["t1"]
    assert store.firings("t0") == []
    assert len(store.firings("t1")) == 1
    assert store.record_firing(Firing("t0", "k", T0)) is True  # a new life starts clean


def test_eight_threads_fire_once(store: TriggerStore) -> None:
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def fire(i: int) -> None:
        barrier.wait(30)
        won.append(store.record_firing(Firing("t0", "tick-1", T0, f"inv-{i}")))

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(won) == [False] * 7 + [True]


def _fire_in_child(go: Any, url: str, options: dict[str, Any], me: int, out: str) -> None:
    from fleet.state import open_state

    state = open_state(url, **options)
    won = []
    try:
        go.wait(60)
        for key in range(40):
            if trigger_store(state).record_firing(Firing("t0", f"tick-{key}", T0, f"p{me}")):
                won.append(key)
    finally:
        state.close()
        Path(out).write_text(json.dumps(won))


def test_processes_fire_each_key_once(state_target: Any, tmp_path: Path) -> None:
    if not state_target.cross_process:
        pytest.skip(f"{state_target.name} lives in one process")
    store = trigger_store(state_target.open())
    outs = [tmp_path / f"won{i}.json" for i in range(4)]
    arglists = [(state_target.url, state_target.options, i, str(o)) for i, o in enumerate(outs)]
    with spawned(_fire_in_child, arglists) as go:
        go.set()
    won = [key for out in outs for key in json.loads(out.read_text())]
    assert sorted(won) == list(range(40))
    assert len(store.firings("t0", limit=100)) == 40


def test_firings_keep_source_error_call_and_pending(store: TriggerStore) -> None:
    pending = Firing("t0", "k1", T0, "inv-1", "src-1", "", b"\x92\x90\x80", True)
    failed = Firing("t0", "k2", T0 + 1, "", "event:paid:e1", "TypeError: no 'x'")
    assert store.record_firing(pending) and store.record_firing(failed)
    assert store.firings("t0") == [failed, pending]


def test_pending_firings_are_found_and_settled(store: TriggerStore) -> None:
    for i in range(5):
        store.record_firing(Firing(f"t{i % 2}", f"k{i}", T0 + i, f"inv-{i}", pending=i != 2))
    assert [f.key for f in store.pending_firings(before=T0 + 3.5)] == ["k0", "k1", "k3"]
    assert [f.key for f in store.pending_firings(before=T0 + 10, limit=2)] == ["k0", "k1"]
    assert store.pending_firings(before=T0 + 10, limit=0) == []
    store.settle_firing("t0", "k0")
    store.settle_firing("t1", "k1", error="PublishError: down")
    store.settle_firing("t1", "nothing-here")
    assert [f.key for f in store.pending_firings(before=T0 + 10)] == ["k3", "k4"]
    (k1,) = [f for f in store.firings("t1") if f.key == "k1"]
    assert (k1.pending, k1.error, k1.invocation) == (False, "PublishError: down", "inv-1")


def test_hits_are_recorded_once_and_forgotten(store: TriggerStore) -> None:
    assert store.record_hit(Hit("t9", 0, "inv-a", T0)) is True
    assert store.record_hit(Hit("t9", 0, "inv-a", T0 + 5)) is False
    assert store.record_hit(Hit("t9", 1, "inv-a", T0 + 1)) is True  # another part
    assert store.record_hit(Hit("t8", 0, "inv-b", T0 + 2)) is True
    assert store.hits("t9", since=T0) == [Hit("t9", 0, "inv-a", T0), Hit("t9", 1, "inv-a", T0 + 1)]
    assert store.hits("t9", since=T0 + 0.5) == [Hit("t9", 1, "inv-a", T0 + 1)]
    assert store.record_hit(Hit("t9", 2, "e1", T0 + 100), forget_before=T0 + 50) is True
    assert store.hits("t9", since=0) == [Hit("t9", 2, "e1", T0 + 100)]
    assert store.hits("t8", since=0) == [Hit("t8", 0, "inv-b", T0 + 2)]  # another trigger


def test_delete_removes_hits(store: TriggerStore) -> None:
    store.save_trigger(every_kind()[9])
    store.record_hit(Hit("t9", 0, "inv-a", T0))
    assert store.delete_trigger("t9") is True
    assert store.hits("t9", since=0) == []
