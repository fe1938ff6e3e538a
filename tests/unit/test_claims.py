"""The claim path on the in-memory stack: nothing claimed is ever dropped.

A broker consumer or state store that fails once, at the worst moment, is a real
backend wrapped so that one call raises (never a mock of the backend).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from fleet import Fleet, Status
from fleet._envelope import Envelope, pack, unpack
from fleet.broker import Message
from fleet.codec import encode_call
from fleet.errors import BrokerError, StateError
from fleet.state import Change, RunnerRecord
from fleet.status import CLAIMABLE
from fleet.testing.worker import running_worker
from fleet.worker import recovery
from fleet.worker.leader import Leader
from fleet.worker.process import WorkerProcess
from tests.waiting import wait_until

calls: dict[str, int] = {}


def add_one(key: str, x: int) -> int:
    calls[key] = calls.get(key, 0) + 1
    return x + 1


@pytest.fixture
def app() -> Iterator[Fleet]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url, shutdown_grace=2, recovery_interval=0.01)
    app.task(add_one)
    yield app
    app.close()


def task_of(app: Fleet) -> Any:
    return app.tasks[f"{__name__}.add_one"]


class FailingOnce:
    """A real consumer whose `method` raises once, without doing anything."""

    def __init__(self, inner: Any, method: str, failed: threading.Event) -> None:
        self._inner = inner
        self._method = method
        self.failed = failed

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method or self.failed.is_set():
            return attr

        def fail(*args: object, **kwargs: object) -> None:
            self.failed.set()
            raise BrokerError(f"{name} failed (test)")

        return fail


def consumers_failing_once(
    app: Fleet, monkeypatch: pytest.MonkeyPatch, method: str, first: Any = None
) -> threading.Event:
    """Make every consumer the worker opens fail once (in all) at `method`."""
    broker = app.runtime().broker
    real = broker.consumer
    failed = threading.Event()
    prepared = [first] if first is not None else []

    def consumer(queues: Sequence[str], prefetch: int) -> Any:
        return prepared.pop() if prepared else FailingOnce(real(queues, prefetch), method, failed)

    monkeypatch.setattr(broker, "consumer", consumer)
    return failed


def statuses(invocation: Any) -> list[Status]:
    return [h.status for h in invocation.history]


def test_claimed_job_runs_when_the_ack_fails(app: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = consumers_failing_once(app, monkeypatch, "ack")
    key = uuid.uuid4().hex
    with running_worker(app, threads=2):
        invocation = task_of(app)(key, 1)
        assert invocation.result(timeout=10) == 2
        assert failed.is_set()
    assert calls[key] == 1
    assert statuses(invocation) == [Status.PENDING, Status.RUNNING, Status.SUCCESS]


def test_claimed_job_runs_when_dead_lettering_an_expired_arrival_fails(
    app: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message whose record never came expires in the round that claims a real
    invocation; dead-lettering it fails: the claimed invocation still runs, and the
    message is dead-lettered on its next delivery."""
    runtime = app.runtime()
    queue = app.settings.default_queue
    runtime.declare([queue])
    task = task_of(app)
    args = encode_call(app.codec, task.name, ("k", 0), {})
    orphan = Envelope(uuid.uuid4().hex, task.name, args, app.codec.name)
    runtime.broker.publish([Message(queue, pack(orphan), orphan.id)])
    held = FailingOnce(runtime.broker.consumer([queue], 4), "dead_letter", threading.Event())
    (delivery,) = held.receive(1, timeout=5)
    failed = consumers_failing_once(app, monkeypatch, "dead_letter", first=held)
    held.failed = failed

    worker = WorkerProcess(app, threads=2)
    worker.early.grace = 0.3
    worker.early.add(delivery, unpack(delivery.message.body), task, time.monotonic() - 60)
    key = uuid.uuid4().hex
    invocation = task(key, 41)  # queued behind nothing: received in the worker's first round
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert invocation.result(timeout=10) == 42
        assert failed.is_set()
        wait_until(lambda: runtime.broker.stats(queue).dead == 1, "the dead letter", 10)
    finally:
        worker.stop()
        thread.join(timeout=30)
    (letter,) = runtime.broker.dead_letters(queue)
    assert "no invocation record" in letter.reason
    assert calls[key] == 1


def store_failing_on_claim(
    app: Fleet, monkeypatch: pytest.MonkeyPatch, *, applied: bool, reads_failing: int = 0
) -> threading.Event:
    """The first claim raises, after (`applied`) or without applying it; then the next
    `reads_failing` reads of the worker raise too (the store is still down)."""
    state = app.runtime().state
    apply, get = state.apply, state.get
    failed = threading.Event()
    reads = [reads_failing]
    caller = threading.get_ident()  # the test's own reads (results) go through

    def flaky_apply(changes: Sequence[Change], at: float | None = None) -> list[bool]:
        claim = any(c.to is Status.RUNNING and c.count_attempt for c in changes)
        if not claim or failed.is_set():
            return apply(changes, at)
        failed.set()
        if applied:
            apply(changes, at)
        raise StateError("connection lost after sending the update (test)")

    def flaky_get(ids: Sequence[str]) -> Any:
        if failed.is_set() and reads[0] > 0 and threading.get_ident() != caller:
            reads[0] -= 1
            raise StateError("still down (test)")
        return get(ids)

    monkeypatch.setattr(state, "apply", flaky_apply)
    monkeypatch.setattr(state, "get", flaky_get)
    return failed


@pytest.mark.parametrize(("applied", "reads_failing"), [(True, 0), (True, 2), (False, 1)])
def test_claim_with_unknown_outcome_runs_once(
    app: Fleet, monkeypatch: pytest.MonkeyPatch, applied: bool, reads_failing: int
) -> None:
    failed = store_failing_on_claim(app, monkeypatch, applied=applied, reads_failing=reads_failing)
    key = uuid.uuid4().hex
    with running_worker(app, threads=2):
        invocation = task_of(app)(key, 1)
        assert invocation.result(timeout=20) == 2
        assert failed.is_set()
    assert calls[key] == 1
    assert statuses(invocation) == [Status.PENDING, Status.RUNNING, Status.SUCCESS]


# -- the leader's reconciliation: owned by a live process that does not hold it ---------


def claim_as(app: Fleet, ids: Sequence[str], owner: str, at: float) -> None:
    changes = [Change(i, Status.RUNNING, CLAIMABLE, by=owner, count_attempt=True) for i in ids]
    assert app.runtime().state.apply(changes, at=at) == [True] * len(ids)


def beat(app: Fleet, owner: str, at: float, in_hand: Sequence[str] = ()) -> None:
    record = RunnerRecord(
        owner, "process", socket.gethostname(), os.getpid(), at, in_hand=tuple(in_hand)
    )
    app.runtime().state.beat([record])


def test_leader_requeues_what_a_live_owner_does_not_hold(app: Fleet) -> None:
    """Three invocations RUNNING under a live process (its messages acked as duplicates
    meanwhile): the one its heartbeat lists and the one claimed after its heartbeat stay;
    the unlisted one is requeued on the second sighting, and runs."""
    task = task_of(app)
    key = uuid.uuid4().hex
    dropped, listed, fresh = task(key, 1), task(key, 2), task(key, 3)
    t0 = time.time()
    ghost = "ghost:1:process:test"
    claim_as(app, [dropped.id, listed.id], ghost, t0 - 30)
    claim_as(app, [fresh.id], ghost, t0 - 0.5)
    with running_worker(app, threads=2) as worker:  # gets the messages: duplicates
        queue = app.settings.default_queue
        wait_until(lambda: app.runtime().broker.stats(queue).ready == 0, "the messages", 10)
        leader = Leader(app, "test-leader")
        beat(app, ghost, t0, in_hand=[listed.id])
        leader.tick(t0)  # first sighting: nothing moves yet
        assert dropped.status is Status.RUNNING
        beat(app, ghost, t0 + 1, in_hand=[listed.id])
        leader.tick(t0 + 1)
        assert dropped.result(timeout=10) == 2
        assert worker.processed == 1
    assert statuses(dropped) == [
        Status.PENDING,
        Status.RUNNING,
        Status.PENDING,
        Status.RUNNING,
        Status.SUCCESS,
    ]
    assert dropped.history[2].note == "its live owner does not hold it"
    for stays in (listed, fresh):
        assert statuses(stays) == [Status.PENDING, Status.RUNNING]
        assert app.runtime().state.get([stays.id])[0].owner == ghost


def test_unheld_suspect_is_kept_when_it_changes_or_the_beat_does_not_advance(
    app: Fleet,
) -> None:
    task = task_of(app)
    invocation = task(uuid.uuid4().hex, 1)
    t0 = time.time()
    ghost = "ghost:2:process:test"
    claim_as(app, [invocation.id], ghost, t0 - 30)
    seen: dict[str, tuple[str, float, float]] = {}
    beat(app, ghost, t0)
    assert recovery.recover_unheld(app, "leader", t0, seen) == 0
    assert recovery.recover_unheld(app, "leader", t0 + 1, seen) == 0  # same heartbeat
    beat(app, ghost, t0 + 5, in_hand=[invocation.id])  # it holds it after all
    assert recovery.recover_unheld(app, "leader", t0 + 5, seen) == 0
    assert seen == {}
    beat(app, ghost, t0 + 10)
    assert recovery.recover_unheld(app, "leader", t0 + 10, seen, margin=50) == 0  # too recent
    assert seen == {}
    beat(app, ghost, t0 + 15)
    assert recovery.recover_unheld(app, "leader", t0 + 15, seen) == 0
    beat(app, ghost, t0 + 20)
    assert recovery.recover_unheld(app, "leader", t0 + 20, seen) == 1
    assert invocation.status is Status.PENDING
