"""The leader expires finished invocations older than `retention`, in bounded batches."""

from __future__ import annotations

import uuid

from fleet import Fleet
from fleet.state import InvocationRecord, StateStore
from fleet.status import HistoryEntry, Status
from fleet.worker.leader import EXPIRE_BATCH, Leader


def _finished(state: StateStore, n: int, at: float, status: Status = Status.SUCCESS) -> None:
    state.register(
        [
            InvocationRecord(
                id=f"{status.value}-{uuid.uuid4().hex}",
                task="t.task",
                queue="default",
                args=b"\x90",
                codec="msgpack",
                status=status,
                history=(HistoryEntry(status, at),),
                created=at,
                updated=at,
            )
            for _ in range(n)
        ]
    )


def _app(retention: float) -> Fleet:
    url = f"memory://{uuid.uuid4().hex}"
    return Fleet(broker_url=url, state_url=url, retention=retention, recovery_interval=10.0)


def test_leader_expires_old_finished_invocations_a_batch_per_tick() -> None:
    app = _app(retention=100.0)
    state = app.runtime().state
    now = 1_800_000_000.0
    _finished(state, EXPIRE_BATCH + 500, now - 200)
    _finished(state, 3, now - 50)  # within retention
    _finished(state, 2, now - 200, Status.PENDING)  # not finished
    leader = Leader(app, "runner-1")
    leader.tick(now)
    assert sum(state.counts().values()) == 500 + 3 + 2
    leader.tick(now + 1)  # the last batch was full: one more at the next tick
    counts = state.counts()
    assert (counts[Status.SUCCESS], counts[Status.PENDING]) == (3, 2)
    leader.tick(now + 2)  # nothing left, and not due again before recovery_interval
    assert state.counts()[Status.SUCCESS] == 3


def test_retention_zero_keeps_everything() -> None:
    app = _app(retention=0.0)
    state = app.runtime().state
    _finished(state, 5, 1.0)
    Leader(app, "runner-1").tick(1_800_000_000.0)
    assert state.counts()[Status.SUCCESS] == 5


def test_only_the_lease_holder_expires() -> None:
    app = _app(retention=100.0)
    state = app.runtime().state
    assert state.lease(f"{app.settings.name}:leader", "someone-else", 60)
    now = 1_800_000_000.0
    _finished(state, 5, now - 200)
    Leader(app, "runner-1").tick(now)
    assert state.counts()[Status.SUCCESS] == 5
