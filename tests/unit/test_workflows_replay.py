"""Workflows without a worker: the replay engine on recorded histories, divergence,
version markers, the determinism helpers, data and signals (inline mode)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from fleet import Fleet
from fleet import workflows as wf
from fleet.errors import DivergenceError, HistoryConflictError, SignalTimeoutError, WorkflowError
from fleet.workflows import Event
from fleet.workflows._memory import MemoryHistoryStore
from fleet.workflows._replay import Replayer
from tests.waiting import wait_until

app = Fleet(inline=True)
ran: dict[str, int] = {}
mode: dict[str, object] = {"fail_once": set(), "new_code": False}


def _count(name: str) -> None:
    ran[name] = ran.get(name, 0) + 1


@app.task
def step(name: str, n: int) -> int:
    _count(f"{name}:{n}")
    return n * 10


@app.task
def fraud_check(n: int) -> bool:
    _count(f"fraud:{n}")
    return True


@app.workflow(max_retries=2)
def flaky(key: str) -> dict[str, object]:
    """Calls, helpers and data; fails once after them (first attempt) to be replayed."""
    a = step("a", 1).result()
    fanned = step.parallelize([("b", i) for i in range(5)]).results()
    drawn = [wf.now().timestamp(), str(wf.uuid4()), wf.random()]
    effect = wf.side_effect(lambda: _count(f"effect:{key}") or ran[f"effect:{key}"])
    wf.set("stage", "half")
    seen = wf.get("stage")
    fail_once = mode["fail_once"]
    assert isinstance(fail_once, set)
    if key in fail_once:
        fail_once.discard(key)
        raise RuntimeError("first attempt dies here")
    return {"a": a, "fanned": fanned, "drawn": drawn, "effect": effect, "seen": seen}


@app.workflow(max_retries=1)
def evolving(key: str) -> list[str]:
    out = []
    if mode["new_code"] and wf.version("add-fraud-check", 1) >= 1:
        fraud_check(1).result()
        out.append("fraud")
    step("a", 1).result()
    out.append("a")
    if key in mode["fail_once"]:  # type: ignore[operator]
        mode["fail_once"].discard(key)  # type: ignore[attr-defined]
        raise RuntimeError("retry me")
    return out


@app.workflow(max_retries=1)
def diverging(key: str) -> int:
    first = step("x" if not mode["new_code"] else "y", 1).result()
    if key in mode["fail_once"]:  # type: ignore[operator]
        mode["fail_once"].discard(key)  # type: ignore[attr-defined]
        raise RuntimeError("retry me")
    return first


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()
    mode["fail_once"] = set()
    mode["new_code"] = False


# -- the replay engine on recorded histories ------------------------------------------


def test_a_recorded_position_replays_and_a_new_one_is_recorded() -> None:
    store = MemoryHistoryStore()
    store.append("h", "r", Event(0, "call", "t", b"args", ("c0",)))
    replay = Replayer(store, "h", "r")
    event, replayed = replay.step("call", "t", b"args")
    assert replayed and event.ids == ("c0",)
    draft, replayed = replay.step("value", "now")
    assert not replayed and draft.seq == 1
    replay.record(Event(1, "value", "now", b"1"))
    assert [e.name for e in store.load("h")] == ["t", "now"]


def test_divergence_names_the_position_and_both_calls() -> None:
    store = MemoryHistoryStore()
    store.append("h", "r", Event(0, "value", "now", b""))
    store.append("h", "r", Event(1, "call", "shop.charge", b"a1"))
    replay = Replayer(store, "h", "r", show=lambda e: e.data.decode())
    replay.step("value", "now")
    with pytest.raises(DivergenceError) as caught:
        replay.step("call", "shop.refund", b"a2")
    message = str(caught.value)
    assert "position 1" in message
    assert "shop.charge(a1)" in message and "shop.refund(a2)" in message


def test_same_task_with_other_arguments_diverges() -> None:
    store = MemoryHistoryStore()
    store.append("h", "r", Event(0, "call", "t", b"one"))
    with pytest.raises(DivergenceError, match="position 0"):
        Replayer(store, "h", "r").step("call", "t", b"two")


def test_version_marker_old_history_gets_zero_and_new_code_records_current() -> None:
    store = MemoryHistoryStore()
    store.append("old", "r", Event(0, "call", "t", b""))
    old = Replayer(store, "old", "r")
    assert old.version("m", 2, lambda n: bytes([n])) is None  # recorded before the marker
    assert old.step("call", "t")[1]  # the position was not used by the marker
    new = Replayer(store, "new", "r")
    assert new.version("m", 2, lambda n: bytes([n])) == b"\x02"
    again = Replayer(store, "new", "r")
    assert again.version("m", 3, lambda n: bytes([n])) == b"\x02"  # recorded value wins


def test_a_second_attempt_recording_the_same_position_conflicts() -> None:
    store = MemoryHistoryStore()
    first, zombie = Replayer(store, "h", "r"), Replayer(store, "h", "r")
    first.record(first.step("value", "now")[0])
    with pytest.raises(HistoryConflictError):
        zombie.record(zombie.step("value", "now")[0])


# -- workflows run inline ------------------------------------------------------------


def test_inline_workflow_result_and_history() -> None:
    handle = flaky("k0")
    value = handle.result()
    assert value["a"] == 10 and value["fanned"] == [0, 10, 20, 30, 40]
    assert value["seen"] == "half" and value["effect"] == 1
    run = app.workflow_run(handle.id)
    kinds = [(e.kind, e.name) for e in run.history]
    assert kinds[:2] == [("call", step.name), ("call", step.name)]
    assert len(run.history[1].ids) == 5
    assert run.data == {"stage": "half"}


def test_a_retried_workflow_replays_calls_and_recorded_values() -> None:
    mode["fail_once"] = {"k1"}
    handle = flaky("k1")
    value = handle.result()
    # The first attempt died after every step; the retry replayed them all.
    assert ran == {"a:1": 1, **{f"b:{i}": 1 for i in range(5)}, "effect:k1": 1}
    run = app.workflow_run(handle.id)
    drawn = [e for e in run.history if e.kind == "value"]
    assert len(drawn) == 4  # now, uuid4, random, side_effect: recorded once each
    assert value["effect"] == 1


def test_replayed_helpers_return_the_first_execution_values() -> None:
    mode["fail_once"] = {"k2"}
    handle = flaky("k2")
    value = handle.result()
    history = app.workflow_run(handle.id).history
    now, uuid_hex, rand, _ = [app.codec.decode(e.data) for e in history if e.kind == "value"]
    as_datetime = datetime.fromtimestamp(now, UTC).timestamp()
    assert value["drawn"] == [as_datetime, str(uuid.UUID(uuid_hex)), rand]


def test_divergence_fails_the_workflow_clearly() -> None:
    mode["fail_once"] = {"d1"}

    def switch() -> None:
        mode["new_code"] = True

    # The first attempt records step('x', 1), then fails; the code changes; the retry
    # calls step('y', 1) at the same position.
    original = step.func

    def changing(name: str, n: int) -> int:
        switch()
        return original(name, n)

    step.func = changing
    try:
        handle = diverging("d1")
    finally:
        step.func = original
    with pytest.raises(DivergenceError) as caught:
        handle.result()
    message = str(caught.value)
    assert "position 0" in message and "'x', 1" in message and "'y', 1" in message


def test_version_marker_lets_new_code_replay_an_old_history() -> None:
    mode["fail_once"] = {"v1"}
    original = step.func

    def changing(name: str, n: int) -> int:
        mode["new_code"] = True  # the code changes while the first attempt runs
        return original(name, n)

    step.func = changing
    try:
        handle = evolving("v1")
    finally:
        step.func = original
    assert handle.result() == ["a"]  # the old history replays without the new branch
    assert "fraud:1" not in ran
    fresh = evolving("v2")  # a new run takes the new branch
    assert fresh.result() == ["fraud", "a"]
    assert next(e.kind for e in app.workflow_run(fresh.id).history) == "version"


def test_helpers_outside_a_workflow_are_refused() -> None:
    for helper in (wf.now, wf.uuid4, wf.random, lambda: wf.version("m", 1), lambda: wf.sleep(1)):
        with pytest.raises(WorkflowError, match="only available"):
            helper()
    with pytest.raises(WorkflowError):
        wf.get("k")
    with pytest.raises(WorkflowError, match="version must be an int >= 1"):
        wf.version("m", 0)


@app.workflow
def waits(timeout: float, tag: str) -> object:
    wf.set("tag", tag)
    return wf.wait_signal("go", timeout=timeout)


def test_inline_signal_and_timeout() -> None:
    with pytest.raises(SignalTimeoutError, match="'go'"):
        waits(0.05, "t0").result()
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(waits(30, "t1").result()))
    thread.start()
    store = app._workflows().store()

    def waiting() -> list[str]:
        return [run for run, data in list(store._data.items()) if data.get("tag")]  # type: ignore[attr-defined]

    def tagged() -> list[str]:
        return [r for r in waiting() if app.workflow_run(r).data.get("tag") == "t1"]

    wait_until(tagged, "the waiting run")
    app.workflow_run(tagged()[0]).signal("go", {"ok": 1})
    thread.join(30)
    assert result == [{"ok": 1}]


@app.workflow
def inline_inner(key: str) -> str:
    wf.set(key, 1)
    return wf.run_id()


@app.workflow(force_new_workflow=True)
def inline_separate(key: str) -> str:
    wf.set(key, 2)
    return wf.run_id()


@app.workflow
def inline_outer() -> list[str]:
    return [inline_inner("in").result(), inline_separate("sep").result(), wf.run_id()]


def test_inline_sub_workflows_share_the_run_unless_forced_new() -> None:
    handle = inline_outer()
    inner_run, separate_run, outer_run = handle.result()
    assert inner_run == outer_run == handle.id and separate_run != handle.id
    assert app.workflow_run(handle.id).data == {"in": 1}
    assert app.workflow_run(separate_run).data == {"sep": 2}
