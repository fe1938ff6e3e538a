"""The committer writes outcomes before it announces them, and frees slots on the write.

A process killed between a body's return and the write of its outcome has that body
run again by recovery (a body completed twice). These pin the window to the write
itself: an outcome put while another thread is busy announcing (here: a notification
that blocks) is written at once, and `on_applied` (the executor frees the slot there)
runs when the outcome is in the store, not when it is announced.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence

import pytest

from fleet import Fleet, Status
from fleet.state import Change
from fleet.worker.committer import Committer
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(broker_url=URL, state_url=URL)
ME = "runner-under-test"


@app.task
def noop(x: int) -> int:
    return x


class BlockingNotify:
    """Result notifications that block the first call until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[tuple[str, bytes]] = []

    def __call__(self, notes: Sequence[tuple[str, bytes]]) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10), "never released"
        self.sent.extend(notes)


@pytest.fixture
def notify() -> Iterator[BlockingNotify]:
    blocking = BlockingNotify()
    yield blocking
    blocking.release.set()


def running(n: int) -> list[str]:
    """`n` invocations RUNNING under ME, as a worker's claim leaves them."""
    state = app.runtime().state
    ids = [noop(i).id for i in range(n)]
    claims = [
        Change(r.id, Status.RUNNING, frozenset({r.status}), by=ME, count_attempt=True)
        for r in state.get(ids)
    ]
    assert all(state.apply(claims))
    return ids


def success(invocation_id: str) -> Change:
    return Change(
        invocation_id,
        Status.SUCCESS,
        frozenset({Status.RUNNING}),
        by=ME,
        expect_owner=ME,
        result=app.codec.encode(1),
    )


def status(invocation_id: str) -> Status:
    (record,) = app.runtime().state.get([invocation_id])
    return record.status


def test_an_outcome_put_during_another_announce_is_written_at_once(
    notify: BlockingNotify,
) -> None:
    runtime = app.runtime()
    committer = Committer(runtime.state, runtime.broker, runtime.waiter, notify)
    first, second = running(2)
    announcing = threading.Thread(target=committer.put, args=(success(first), "caller"))
    announcing.start()
    assert notify.entered.wait(10)  # `first` written, its notification blocked
    assert status(first) is Status.SUCCESS
    committer.put(success(second), "caller")
    # Written while the other thread still announces (before: it waited behind them).
    wait_until(lambda: status(second) is Status.SUCCESS, "the second outcome written", 5)
    notify.release.set()
    announcing.join(10)
    assert committer.flush(10)
    assert [to for to, _ in notify.sent] == ["caller", "caller"]


def test_on_applied_runs_once_the_outcome_is_written_before_its_notification(
    notify: BlockingNotify,
) -> None:
    runtime = app.runtime()
    committer = Committer(runtime.state, runtime.broker, runtime.waiter, notify)
    (invocation,) = running(1)
    seen: list[Status] = []
    thread = threading.Thread(
        target=committer.put,
        args=(success(invocation), "caller"),
        kwargs={"on_applied": lambda: seen.append(status(invocation))},
    )
    thread.start()
    assert notify.entered.wait(10)
    assert seen == [Status.SUCCESS]  # called before the (blocked) notification
    notify.release.set()
    thread.join(10)
    assert committer.flush(10)


def test_outcomes_queued_during_a_write_are_all_written_and_announced() -> None:
    runtime = app.runtime()
    sent: list[tuple[str, bytes]] = []
    committer = Committer(runtime.state, runtime.broker, runtime.waiter, sent.extend)
    ids = running(40)
    applied: list[str] = []
    lock = threading.Lock()

    def put(invocation_id: str) -> None:
        def done() -> None:
            with lock:
                applied.append(invocation_id)

        committer.put(success(invocation_id), "caller", on_applied=done)

    threads = [threading.Thread(target=put, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert committer.flush(10)
    wait_until(lambda: len(sent) == len(ids), "every outcome announced", 5)
    assert sorted(applied) == sorted(ids)
    assert all(status(i) is Status.SUCCESS for i in ids)
