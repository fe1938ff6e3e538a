"""A hard time limit replaces the worker process without punishing its neighbours."""

from __future__ import annotations

import pytest

from fleet import Status
from fleet.errors import HardTimeLimitExceeded
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.timeout(240)


def test_hard_limit_replaces_the_process_and_its_neighbours_finish_once(stack: Stack) -> None:
    stack.worker(processes=1, threads=3, FLEET__SHUTDOWN_GRACE="30")
    app = stack.tasks.app
    neighbours = [stack.tasks.neighbour(n, 4.0) for n in range(2)]
    stack.wait_until(
        "neighbours running", lambda: stack.statuses(neighbours) == [Status.RUNNING] * 2
    )
    owner = app.record(neighbours[0].id).owner
    assert app.record(neighbours[1].id).owner == owner  # same process, other threads
    old = next(r for r in app.runtime().state.runners() if r.id == owner)

    runaway = stack.tasks.runaway(1)  # time.sleep(60): no exception reaches its thread
    with pytest.raises(HardTimeLimitExceeded, match="hard time limit"):
        runaway.result(timeout=60)
    assert [n.result(timeout=60) for n in neighbours] == [0, 1]

    for n, invocation in enumerate(neighbours):
        assert len(list(stack.marks.glob(f"neighbour-start-{n}-*"))) == 1
        assert len(list(stack.marks.glob(f"neighbour-done-{n}-*"))) == 1
        record = app.record(invocation.id)
        assert record.attempt == 1  # not charged a recovery
        assert [h.status for h in record.history].count(Status.RUNNING) == 1

    def replaced() -> bool:
        runners = app.runtime().state.runners()
        return any(
            r.kind == "process" and r.parent == old.parent and r.pid != old.pid and not r.stopped
            for r in runners
        )

    stack.wait_until("a new worker process", replaced)
    assert stack.tasks.quick(41).result(timeout=60) == 42  # and it serves


def test_a_neighbour_cut_short_after_the_grace_period_is_requeued_uncharged(
    stack: Stack,
) -> None:
    stack.worker(processes=1, threads=2, FLEET__SHUTDOWN_GRACE="0.5")
    app = stack.tasks.app
    neighbour = stack.tasks.neighbour(0, 4.0)
    stack.wait_until("the neighbour running", lambda: neighbour.status is Status.RUNNING)
    runaway = stack.tasks.runaway(1)
    with pytest.raises(HardTimeLimitExceeded):
        runaway.result(timeout=60)
    assert neighbour.result(timeout=60) == 0  # ran again in the replacement process
    record = app.record(neighbour.id)
    assert record.attempt == 1  # the run cut short was given back
    assert any("uncharged" in h.note for h in record.history)
    assert len(list(stack.marks.glob("neighbour-done-0-*"))) == 1
