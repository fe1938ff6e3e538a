"""The HistoryStore contract (fleet.workflows), run against every state store in STATES."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from fleet import workflows
from fleet.errors import HistoryConflictError
from fleet.state import StateStore
from fleet.workflows import Event, HistoryStore, history_store
from tests.contract.conftest import StateTarget


@pytest.fixture
def store(state_target: StateTarget, state: StateStore) -> Iterator[HistoryStore]:
    yield history_store(state)
    if state_target.name == "memory":
        workflows.drop(state_target.url.partition("://")[2])


def ev(seq: int, kind: str = "call", name: str = "t", ids: tuple[str, ...] = ()) -> Event:
    return Event(seq, kind, name, f"data-{seq}".encode(), ids, 1000.0 + seq)


def test_events_come_back_in_order_with_every_field(store: HistoryStore) -> None:
    assert store.load("h1") == []
    events = [ev(0, ids=("a", "b")), ev(1, "value", "now"), ev(2, "version", "m")]
    for e in events:
        store.append("h1", "run1", e)
    assert store.load("h1") == events
    assert store.load("h2") == []


def test_a_taken_position_is_refused_and_not_rewritten(store: HistoryStore) -> None:
    store.append("h", "r", ev(0))
    with pytest.raises(HistoryConflictError):
        store.append("h", "r", Event(0, "value", "other", b"x"))
    assert store.load("h") == [ev(0)]
    store.append("h", "r", ev(1))
    with pytest.raises(HistoryConflictError):
        store.append("h", "r", ev(1, "sleep", "sleep"))
    assert store.load("h") == [ev(0), ev(1)]


def test_histories_are_independent(store: HistoryStore) -> None:
    store.append("a", "r", ev(0))
    store.append("b", "r", ev(0, "value", "x"))
    assert store.load("a") == [ev(0)]
    assert store.load("b") == [ev(0, "value", "x")]


def test_children_belong_to_the_run_of_the_step(store: HistoryStore) -> None:
    assert store.run_of("c1") is None
    store.append("h", "run-9", ev(0, ids=("c1", "c2")))
    store.append("sub", "run-9", ev(0, ids=("c3",)))
    assert store.run_of("c1") == "run-9"
    assert store.run_of("c2") == "run-9"
    assert store.run_of("c3") == "run-9"
    assert store.run_of("h") is None


def test_data_is_per_run_and_keys_are_replaced(store: HistoryStore) -> None:
    assert store.data("r") == {}
    store.set_data("r", "stage", b"1")
    store.set_data("r", "other.key$", b"x")
    store.set_data("r", "stage", b"2")
    store.set_data("r2", "stage", b"3")
    assert store.data("r") == {"stage": b"2", "other.key$": b"x"}
    assert store.data("r2") == {"stage": b"3"}


def test_a_set_event_sets_the_data_and_the_latest_write_wins(store: HistoryStore) -> None:
    store.append("h", "run", Event(0, "set", "stage", b"packed", (), time.time()))
    assert store.data("run") == {"stage": b"packed"}
    store.set_data("run", "stage", b"by-a-task")
    assert store.data("run") == {"stage": b"by-a-task"}
    store.append("h", "run", Event(1, "set", "stage", b"done", (), time.time() + 1))
    store.append("h", "run", Event(2, "set", "other", b"x", (), time.time() + 1))
    assert store.data("run") == {"stage": b"done", "other": b"x"}
    assert store.data("h") == {}  # the data is the run's, not the history's


def test_signals_keep_their_order_per_name(store: HistoryStore) -> None:
    assert store.signals("h", "go") == []
    for payload in (b"1", b"2", b"3"):
        store.signal("h", "go", payload)
    store.signal("h", "stop", b"s")
    store.signal("other", "go", b"o")
    assert store.signals("h", "go") == [b"1", b"2", b"3"]
    assert store.signals("h", "stop") == [b"s"]


def test_another_instance_sees_the_same_histories(
    state_target: StateTarget, store: HistoryStore
) -> None:
    other = history_store(state_target.open())
    store.append("h", "r", ev(0, ids=("c",)))
    store.set_data("r", "k", b"v")
    assert other.load("h") == [ev(0, ids=("c",))]
    assert other.run_of("c") == "r"
    assert other.data("r") == {"k": b"v"}
    with pytest.raises(HistoryConflictError):
        other.append("h", "r", ev(0))


def test_racing_appenders_of_one_position_one_wins(
    state_target: StateTarget, store: HistoryStore
) -> None:
    stores = [store, *(history_store(state_target.open()) for _ in range(3))]
    store.append("h", "r", ev(0))
    wins: list[int] = []
    start = threading.Barrier(8)

    def racer(n: int) -> None:
        start.wait()
        try:
            stores[n % len(stores)].append("h", "r", Event(1, "value", f"w{n}", b""))
            wins.append(n)
        except HistoryConflictError:
            pass

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1
    assert [e.name for e in store.load("h")] == ["t", f"w{wins[0]}"]


def test_mongo_records_a_step_in_one_command(state_target: StateTarget) -> None:
    """MongoDB: one command per recorded step, a fan-out of 20 children included."""
    if state_target.name != "mongo":
        pytest.skip("counts MongoDB commands")
    from pymongo import monitoring

    commands: list[str] = []

    class Counter(monitoring.CommandListener):
        on = True  # listeners cannot be unregistered: this one goes quiet after the test

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if self.on:
                commands.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    counter = Counter()
    monitoring.register(counter)  # clients made from now on report their commands
    try:
        store = history_store(state_target.open())
        store.load("warm-up")  # connects and makes the indexes
        commands.clear()
        store.append("h", "r", ev(0, ids=tuple(f"child-{n}" for n in range(20))))
        assert commands == ["insert"]
        commands.clear()
        store.append("h", "r", ev(1, "value", "now"))
        assert commands == ["insert"]
    finally:
        counter.on = False
