"""Triggers across real processes: cron exactly once over 3 supervisors (one SIGKILLed),
a result chain A -> B -> C once per A, events from 4 producers once per emit."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from fleet.state import Query
from fleet.testing.worker import WorkerCommand
from tests.e2e.conftest import FAST, ROOT, STACKS, Stack, open_stack

pytestmark = pytest.mark.timeout(180)
APP = "tests.e2e.trigger_tasks:app"
FASTER = {**FAST, "FLEET__TRIGGER_GRACE": "3", "FLEET__PENDING_TIMEOUT": "30"}


@pytest.fixture(params=STACKS)
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    yield from open_stack(request, tmp_path, monkeypatch, "tests.e2e.trigger_tasks", FASTER)


def host(stack: Stack, **env: str) -> WorkerCommand:
    """A supervisor standing for one host."""
    command = WorkerCommand(
        APP, processes=1, threads=4, env={**stack.env, **env}, cwd=str(ROOT)
    ).start()
    stack.workers.append(command)
    return command


def lines(stack: Stack, name: str) -> list[list[str]]:
    path = stack.marks / name
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_cron_fires_each_tick_once_over_three_hosts_one_killed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_CRON", "1")  # this process declares the same trigger (same id)
    tasks = importlib.reload(stack.tasks)
    app = tasks.app
    hosts = [host(stack, E2E_CRON="1") for _ in range(3)]
    ran = lambda: {tick for tick, _ in lines(stack, "ticks")}  # noqa: E731
    stack.wait_until("5 ticks ran", lambda: len(ran()) >= 5, timeout=60)

    # SIGKILL the leader's whole host (supervisor and worker process) mid-run.
    state = app.runtime().state
    pids = {h.pid: h for h in hosts}

    def leader() -> WorkerCommand | None:
        runners = state.runners()
        found = [r.pid for r in runners if r.kind == "supervisor" and r.info.get("leader")]
        return next((pids[p] for p in found if p in pids), None)

    stack.wait_until("a leader's heartbeat", lambda: leader() is not None, timeout=30)
    victim = leader()
    assert victim is not None
    os.killpg(victim.pid, signal.SIGKILL)
    assert victim.process is not None
    victim.process.wait()
    seen_at_kill = len(ran())
    stack.wait_until("20 more ticks", lambda: len(ran()) >= seen_at_kill + 20, timeout=60)

    (trigger,) = app.triggers.list(kind="cron")
    app.triggers.pause(trigger.id)
    stop_at = datetime.now().timestamp() + 5  # past the other processes' reload of the set

    def settled() -> bool:
        firings = app.triggers.show(trigger.id, limit=1000).firings
        return datetime.now().timestamp() > stop_at and {f.key for f in firings} <= ran()

    stack.wait_until("every firing ran", settled, timeout=60)
    firings = app.triggers.show(trigger.id, limit=1000).firings
    keys = sorted(f.key for f in firings)
    assert len(keys) == len(set(keys)) >= 25  # one firing record per tick
    assert not [f for f in firings if f.error], firings
    by_tick: dict[str, set[str]] = defaultdict(set)
    for tick, invocation in lines(stack, "ticks"):
        by_tick[tick].add(invocation)
    assert set(by_tick) == set(keys)  # every firing ran; nothing ran unfired
    # One invocation per tick (a run cut short by the kill may run again, as itself).
    assert {tick: ids for tick, ids in by_tick.items() if len(ids) > 1} == {}
    assert {f.invocation for f in firings} == {i for ids in by_tick.values() for i in ids}
    # None missed (catch-up "all"): consecutive seconds from the first to the last.
    seconds = [datetime.fromisoformat(k).timestamp() for k in keys]
    assert seconds == [seconds[0] + i for i in range(len(seconds))]
    count = len(state.find(Query(task=tasks.every_second.name, limit=10_000)))
    assert count == len(keys)


def test_a_result_chain_runs_once_per_source(stack: Stack) -> None:
    tasks, app = stack.tasks, stack.tasks.app
    host(stack)
    host(stack)
    for n in range(10):
        tasks.step_a(n)
    stack.wait_until("10 chains", lambda: len(lines(stack, "chain")) >= 30, timeout=60)
    runs = sorted(" ".join(line) for line in lines(stack, "chain"))
    assert runs == sorted(f"{step} {n}" for step in "abc" for n in range(10))
    state = app.runtime().state
    for task in (tasks.step_a, tasks.step_b, tasks.step_c):
        assert len(state.find(Query(task=task.name))) == 10


def test_events_from_four_producers_start_one_invocation_each(stack: Stack) -> None:
    tasks, app = stack.tasks, stack.tasks.app
    host(stack)
    host(stack)
    producers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from tests.e2e.trigger_tasks import produce; produce({p * 25}, 25)",
            ],
            env={**os.environ, **stack.env},
            cwd=str(ROOT),
        )
        for p in range(4)
    ]
    for producer in producers:
        assert producer.wait(timeout=60) == 0
    stack.wait_until("100 pongs", lambda: len(lines(stack, "pongs")) >= 100, timeout=60)
    pongs = lines(stack, "pongs")
    assert sorted(int(n) for n, _ in pongs) == list(range(100))
    assert len({invocation for _, invocation in pongs}) == 100
    assert len(app.runtime().state.find(Query(task=tasks.pong.name))) == 100
