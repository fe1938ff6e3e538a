"""Concurrency options under races: real producer and worker processes, on SQLite and
on the MongoDB-wire server (its state store; the messages travel on a SQLite broker),
and with RabbitMQ carrying the messages (SQLite state).

- 8 producer processes call the same TASK-mode task 500 times each at once: at most
  one invocation is registered (not final) at any time, and every caller gets the
  result of the invocation it was handed.
- running_concurrency KEYS, 20 keys, 200 invocations, on 2 worker processes x 4
  threads: never two running for one key (from the spans the bodies measure); all
  complete.
- rate_limit 50/s over 10 s (500 calls) on 4 worker processes: no 1-second window of
  starts holds more than 50.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from pathlib import Path
from types import ModuleType

import pytest

from fleet import Group, Status
from fleet.state import InvocationRecord, Query
from fleet.testing.worker import WorkerCommand
from tests.processes import spawned

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).parents[2]
MODULE = "tests.integration.conc_race_tasks"
PRODUCERS = 8
CALLS = 500


@pytest.fixture(params=["sqlite", "mongo", "rabbitmq"])
def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> Iterator[ModuleType]:
    broker = f"sqlite:///{tmp_path}/broker.db"
    if request.param in ("sqlite", "rabbitmq"):
        state = f"sqlite:///{tmp_path}/state.db"
    if request.param == "rabbitmq":  # the wake-ups travel through RabbitMQ too
        broker = request.getfixturevalue("rabbitmq").url
        queue = unique_name("conc")  # a queue of its own on the shared node
        queues = tmp_path / "queues.yaml"
        queues.write_text(f"default: {queue}\nqueues:\n  {queue}: {{}}\n")
        monkeypatch.setenv("FLEET__QUEUES_FILE", str(queues))
        monkeypatch.setenv("FLEET__DEFAULT_QUEUE", queue)
    if request.param == "mongo":
        state = request.getfixturevalue("mongo_db_url")  # from tests/conftest.py
        monkeypatch.setenv("FLEET__CONNECT_TIMEOUT", "30")
    monkeypatch.setenv("FLEET__BROKER_URL", broker)
    monkeypatch.setenv("FLEET__STATE_URL", state)
    monkeypatch.setenv("FLEET__HEARTBEAT_INTERVAL", "0.5")
    monkeypatch.setenv("FLEET__SCHEDULE_INTERVAL", "0.2")
    tasks = importlib.reload(importlib.import_module(MODULE))
    yield tasks
    tasks.app.close()


def records(tasks: ModuleType, name: str) -> list[InvocationRecord]:
    return tasks.app.runtime().state.find(Query(task=name, limit=100_000))


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one time (an end and a start at one instant: no overlap)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def at(record: InvocationRecord, status: Status) -> float:
    return next(h.at for h in record.history if h.status is status)


# -- registration: 8 producers x 500 calls of one TASK-mode task ---------------------------


def _call_in_child(go: Event, out: str) -> None:
    tasks = importlib.import_module(MODULE)
    go.wait(60)
    handles = [tasks.refresh() for _ in range(CALLS)]
    results = Group(handles).results(timeout=600)
    assert results == [h.id for h in handles]  # each got its invocation's own result
    Path(out).write_text(json.dumps([h.id for h in handles]))
    tasks.app.close()


def test_one_registered_at_a_time_and_every_caller_gets_its_result(
    stack: ModuleType, tmp_path: Path
) -> None:
    outs = [tmp_path / f"calls{i}.json" for i in range(PRODUCERS)]
    with WorkerCommand(f"{MODULE}:app", processes=2, threads=2, cwd=str(ROOT)) as worker:
        worker.wait_consumers(stack.app, 2)
        with spawned(_call_in_child, [(str(o),) for o in outs], timeout=700) as go:
            go.set()
    handed = [i for out in outs for i in json.loads(out.read_text())]
    assert len(handed) == PRODUCERS * CALLS
    found = records(stack, stack.refresh.name)
    assert {r.id for r in found} == set(handed)  # every registered one was handed out
    assert all(r.status is Status.SUCCESS for r in found)
    spans = [(at(r, Status.PENDING), at(r, Status.SUCCESS)) for r in found]
    assert most_at_once(spans) == 1
    # The calls did collapse: far fewer invocations than calls.
    assert len(found) < len(handed) / 4, len(found)


# -- running limit: KEYS, 20 keys, 200 invocations, 2 processes x 4 threads ----------------


def test_never_two_running_for_one_key(stack: ModuleType) -> None:
    with WorkerCommand(f"{MODULE}:app", processes=2, threads=4, cwd=str(ROOT)) as worker:
        worker.wait_consumers(stack.app, 2)
        calls = stack.post.parallelize([(n // 10, n) for n in range(200)])
        results = calls.results(timeout=600)
    assert [n for n, _, _ in results] == list(range(200))
    found = records(stack, stack.post.name)
    assert len(found) == 200 and all(r.status is Status.SUCCESS for r in found)
    # The spans the bodies ran, as they measured them. (A claim's RUNNING time in the
    # history is taken before its permit is granted, so history times cannot show this.)
    by_key: dict[int, list[tuple[float, float]]] = {}
    for n, start, end in results:
        by_key.setdefault(n // 10, []).append((start, end))
    assert len(by_key) == 20
    assert max(most_at_once(spans) for spans in by_key.values()) == 1
    # Both worker processes ran some, and the limit did hold some back.
    owners = {h.owner for r in found for h in r.history if h.status is Status.RUNNING}
    assert len(owners) == 2, owners
    assert any(h.status is Status.BLOCKED for r in found for h in r.history)


# -- rate limit: 50/s over 10 s on 4 worker processes -----------------------------------------


def test_no_second_holds_more_than_the_rate(stack: ModuleType) -> None:
    with WorkerCommand(f"{MODULE}:app", processes=4, threads=2, cwd=str(ROOT)) as worker:
        worker.wait_consumers(stack.app, 4)
        calls = stack.tick.parallelize(range(500))
        assert calls.results(timeout=600) == list(range(500))
    found = records(stack, stack.tick.name)
    starts = sorted(at(r, Status.RUNNING) for r in found)
    assert len(starts) == 500
    window = [sum(1 for t in starts[i:] if t < s + 1.0) for i, s in enumerate(starts)]
    assert max(window) <= 50, max(window)
    assert starts[-1] - starts[0] >= 9.0  # the budget, not the workers, set the pace
    owners = {h.owner for r in found for h in r.history if h.status is Status.RUNNING}
    assert len(owners) >= 2, owners  # several processes drew on one budget
