"""Kill workers at the worst moment: nothing is lost (the 001 seed's demo, and more)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from fleet import Status
from fleet.errors import HardTimeLimitExceeded
from tests.e2e.conftest import APP, ROOT, Stack

pytestmark = pytest.mark.timeout(240)


def started(stack: Stack) -> int:
    return len(list(stack.marks.glob("start-*")))


def test_sigkilled_worker_work_is_recovered_by_a_new_worker(stack: Stack) -> None:
    first = stack.worker(processes=1, threads=3)
    invocations = [stack.tasks.slow_task(n) for n in range(3)]
    stack.wait_until("3 tasks running", lambda: stack.statuses(invocations) == [Status.RUNNING] * 3)

    first.kill()  # SIGKILL the supervisor; its worker process dies with it
    assert first.process is not None and first.process.returncode == -signal.SIGKILL
    # As if on another host: the leader's dead-runner recovery, not the same-host one
    # (tests/e2e/test_same_host_recovery.py), must find the work.
    stack.worker(processes=1, threads=3, FLEET__HOST_ID="another-host")

    results = [inv.result(timeout=120) for inv in invocations]
    assert results == [f"task_{n}_completed" for n in range(3)]
    for inv in invocations:
        history = [(h.status, h.note) for h in inv.history]
        assert (Status.PENDING, "owner's heartbeat stopped") in history
        assert [s for s, _ in history].count(Status.SUCCESS) == 1


def test_two_supervisors_one_killed(stack: Stack) -> None:
    a = stack.worker(processes=1, threads=3)
    b = stack.worker(processes=1, threads=3)
    invocations = [stack.tasks.slow_task(n) for n in range(3)]
    stack.wait_until("3 tasks running", lambda: stack.statuses(invocations) == [Status.RUNNING] * 3)
    owners = {inv.app.record(inv.id).owner for inv in invocations}
    # Kill the supervisor ("host") that holds at least one of them.
    victim = a if any(f":{a.pid}:" in owner for owner in owners) else b
    victim.kill()

    results = [inv.result(timeout=120) for inv in invocations]
    assert results == [f"task_{n}_completed" for n in range(3)]


def test_sigkilled_worker_process_is_requeued_by_its_supervisor_at_once(stack: Stack) -> None:
    worker = stack.worker(processes=1, threads=3)
    invocations = [stack.tasks.slow_task(n, 2.0) for n in range(3)]
    stack.wait_until("3 tasks running", lambda: stack.statuses(invocations) == [Status.RUNNING] * 3)
    owner = invocations[0].app.record(invocations[0].id).owner
    child_pid = int(owner.split(":")[1])
    runners = invocations[0].app.runtime().state.runners()
    child = next(r for r in runners if r.id == owner)
    os.kill(child.pid, signal.SIGKILL)
    assert child_pid == worker.pid  # runner ids name the supervisor's pid

    results = [inv.result(timeout=60) for inv in invocations]
    assert results == [f"task_{n}_completed" for n in range(3)]
    notes = [h.note for h in invocations[0].history]
    assert any(note.startswith("worker process exited") for note in notes)


def test_graceful_shutdown_finishes_or_requeues(stack: Stack) -> None:
    worker = stack.worker(processes=1, threads=2, FLEET__SHUTDOWN_GRACE="1")
    short = stack.tasks.slow_task(0, 0.5)
    long = stack.tasks.slow_task(1, 20.0)  # far beyond the grace even on a loaded host
    stack.wait_until("both running", lambda: stack.statuses([short, long]) == [Status.RUNNING] * 2)
    assert worker.stop(timeout=30) == 0  # SIGTERM: exit 0 after the grace period
    assert short.result(timeout=1) == "task_0_completed"
    assert long.status is Status.PENDING  # requeued, not lost
    stack.worker(processes=1, threads=2)
    assert long.result(timeout=60) == "task_1_completed"


def test_hard_time_limit_replaces_the_process(stack: Stack) -> None:
    stack.worker(processes=1, threads=2)
    runaway = stack.tasks.runaway(1)
    with pytest.raises(HardTimeLimitExceeded, match="hard time limit"):
        runaway.result(timeout=60)
    assert stack.tasks.quick(41).result(timeout=60) == 42  # a replacement process serves


def test_cancel_running_invocation(stack: Stack) -> None:
    stack.worker(processes=1, threads=2)
    long = stack.tasks.slow_task(7, 30.0)
    stack.wait_until("running", lambda: long.status is Status.RUNNING)
    assert long.cancel()
    assert long.status is Status.CANCELLED
    assert stack.tasks.quick(1).result(timeout=30) == 2


def test_fleet_check_reports_stale_heartbeats(stack: Stack) -> None:
    command = [sys.executable, "-m", "fleet", "check", "--app", APP]

    def check() -> int:
        return subprocess.run(command, cwd=ROOT, capture_output=True, check=False).returncode

    worker = stack.worker(processes=1, threads=1)
    stack.wait_until("a live heartbeat", lambda: check() == 0, timeout=60)
    worker.kill()
    stack.wait_until("stale heartbeats", lambda: check() == 1, timeout=60)


def test_fib_12_on_two_processes_of_two_threads(stack: Stack) -> None:
    stack.worker(processes=2, threads=2)
    root = stack.tasks.fib(12)
    assert root.result(timeout=180) == 144
    assert Status.PAUSED in [h.status for h in root.history]


def test_worker_process_recycled_after_max_tasks(stack: Stack) -> None:
    stack.worker(processes=1, threads=1, FLEET__MAX_TASKS_PER_CHILD="5")
    group = stack.tasks.quick.parallelize(range(20))
    assert group.results(timeout=120) == [n + 1 for n in range(20)]
    runners = group.invocations[0].app.runtime().state.runners()
    assert len([r for r in runners if r.kind == "process"]) >= 4  # 20 tasks / 5 per child


def test_worker_process_recycled_above_memory_ceiling(stack: Stack) -> None:
    stack.worker(processes=1, threads=1, FLEET__MAX_MEMORY_PER_CHILD="1")  # always above
    app = stack.tasks.app
    stack.wait_until(
        "a recycled process",
        lambda: len([r for r in app.runtime().state.runners() if r.kind == "process"]) >= 2,
    )
    assert stack.tasks.quick(1).result(timeout=60) == 2  # replacements keep serving
