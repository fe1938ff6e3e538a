"""Durable workflows under SIGKILL, on the embedded stack and on RabbitMQ + MongoDB-wire.

The order workflow (tests/e2e/workflow_tasks.py) has 10 steps: validate, reserve, a
fan-out of 20, workflow data, charge, a durable sleep, a signal, ship, notify, data.
The worker holding it is SIGKILLed three times, each while a step is held running
(the marker: the step's 'start' line in its log file); another worker takes over.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Status
from fleet.testing.worker import WorkerCommand
from tests.e2e.conftest import FAST, ROOT, STACKS, Stack, open_stack

pytestmark = pytest.mark.timeout(400)
APP = "tests.e2e.workflow_tasks:app"


@pytest.fixture(params=STACKS)
def wstack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    yield from open_stack(request, tmp_path, monkeypatch, "tests.e2e.workflow_tasks", FAST)


def start_worker(stack: Stack, processes: int = 1, threads: int = 4) -> WorkerCommand:
    command = WorkerCommand(APP, processes=processes, threads=threads, env=stack.env, cwd=str(ROOT))
    stack.workers.append(command.start())
    return command


def lines(stack: Stack, step: str) -> list[str]:
    path = stack.marks / f"{step}.log"
    return path.read_text().splitlines() if path.exists() else []


def started(stack: Stack, step: str) -> int:
    return sum(1 for line in lines(stack, step) if line.startswith("start"))


def test_order_workflow_survives_three_sigkills(wstack: Stack) -> None:
    stack = wstack
    holds = {name: stack.marks / f"hold-{name}" for name in ("pack", "charge", "ship")}
    for hold in holds.values():
        hold.touch()
    worker = start_worker(stack)
    handle = stack.tasks.order_flow({"id": 7, "qty": 3}, 1.0)
    run = stack.tasks.app.workflow_run(handle.id)
    killed_running: dict[str, set[str]] = {}

    def kill_during(step: str) -> WorkerCommand:
        stack.wait_until(f"{step} running", lambda: started(stack, step) > 0, timeout=120)
        # The only worker holds the workflow (PAUSED: it waits on the held step).
        assert stack.tasks.app.record(handle.id).status in (Status.PAUSED, Status.RUNNING)
        worker.kill()  # SIGKILL the supervisor holding the workflow; its process dies too
        killed_running[step] = {
            line.split(" ", 1)[1] for line in lines(stack, step) if line.startswith("start")
        }
        holds[step].unlink()
        return start_worker(stack)

    worker = kill_during("pack")  # 1: during the fan-out of 20
    worker = kill_during("charge")  # 2: during a sequential step, after the fan-out
    stack.wait_until(
        "the workflow waiting for its signal",
        lambda: [e.kind for e in run.history].count("signal") == 1,
        timeout=120,
    )
    assert run.data["stage"] == "packed"
    run.signal("approved", {"by": "ann"})
    worker = kill_during("ship")  # 3: after the signal, during a step

    value = handle.result(timeout=240)
    assert value["payment"] == "paid 2500"  # 3 * 10 + sum(n*n for n < 20)
    assert value["shipped"] == "shipped r7 by ann"
    assert value["packed"] == 2470
    assert handle.status is Status.SUCCESS
    assert run.data["stage"] == "done"
    assert all(run.data[f"packed-{n}"] for n in range(20))
    assert run.replay() == value  # the recorded history replays here, nothing is run

    report = {}
    for step in ("validate", "reserve", "pack", "charge", "ship", "notify"):
        starts = collections.Counter(line[6:] for line in lines(stack, step) if line[:5] == "start")
        ends = collections.Counter(line[4:] for line in lines(stack, step) if line[:3] == "end")
        assert all(n == 1 for n in ends.values()), (step, ends)  # each finished once
        for arg, n in starts.items():
            twice_allowed = arg in killed_running.get(step, set())
            assert n == 1 or (twice_allowed and n == 2), (step, arg, n)
            if n == 2:
                report[f"{step} {arg}"] = "killed while running: ran twice"
    assert len(collections.Counter(lines(stack, "pack"))) >= 20
    assert sum(1 for line in lines(stack, "pack") if line.startswith("end")) == 20
    print("steps run twice (killed while running):", report)
    kinds = [e.kind for e in run.history]
    assert kinds.count("call") == 6 and "sleep" in kinds and kinds.count("signal") == 2
    for child in run.children:
        record = stack.tasks.app.record(child)
        assert record.parent == handle.id
        assert stack.tasks.app._workflows().store().run_of(child) == handle.id


@pytest.fixture
def embedded(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    request.param = "sqlite"  # type: ignore[attr-defined]  # read by backend_env
    yield from open_stack(request, tmp_path, monkeypatch, "tests.e2e.workflow_tasks", FAST)


def test_a_sleeping_workflow_holds_no_slot(embedded: Stack) -> None:
    stack = embedded
    start_worker(stack, processes=1, threads=1)  # one slot in all
    sleeping = stack.tasks.sleeper(5.0)
    stack.wait_until(
        "the workflow suspended in its sleep",
        lambda: sleeping.status is Status.RETRY,
        timeout=60,
    )
    due = stack.tasks.app.record(sleeping.id).due
    others = [stack.tasks.quick(n) for n in range(50)]
    assert [o.result(timeout=60) for o in others] == [n + 1 for n in range(50)]
    finished = [next(h.at for h in o.history if h.status is Status.SUCCESS) for o in others]
    assert due is not None and max(finished) < due  # all 50 ran during the sleep
    assert sleeping.result(timeout=60) == "slept True"
    statuses = [h.status for h in sleeping.history]
    assert statuses.count(Status.RETRY) == 1 and stack.tasks.app.record(sleeping.id).attempt == 1
