"""`before_publish` and `before_claim` wired into the producer and the worker's intake.

A small extension (not the concurrency one) proves the core honours the decisions:
a `Reuse` gives the caller a handle on the existing invocation and registers nothing,
in single calls and batches; a `Hold` parks the invocation BLOCKED with its due time
and note, frees the slot and acks the message, and the release brings its memo back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence

import pytest

from fleet import Fleet, Status
from fleet._envelope import from_record, pack, unpack
from fleet.errors import ExtensionError
from fleet.extensions import (
    Claim,
    ClaimBatch,
    Extension,
    Hold,
    PublishBatch,
    Reuse,
    hold_memo,
    hold_note,
)
from fleet.state import Query
from fleet.testing.worker import running_worker
from tests.waiting import wait_until


class Decide(Extension):
    """Reuses calls whose first argument was seen; holds the first claim of each id."""

    def __init__(self) -> None:
        self.owner: dict[bytes, str] = {}
        self.claims: list[Claim] = []
        self.held: set[str] = set()
        self.refuse = False
        self.lock = threading.Lock()

    def before_publish(self, batch: PublishBatch) -> Sequence[Reuse]:
        if self.refuse:
            raise ExtensionError("refused on purpose")
        reuses = []
        for invocation_id, args in zip(batch.ids, batch.args, strict=True):
            owner = self.owner.setdefault(args, invocation_id)
            if owner != invocation_id:
                reuses.append(Reuse(invocation_id, owner, "seen before"))
        return reuses

    def before_claim(self, claims: ClaimBatch) -> Sequence[Hold]:
        holds = []
        with self.lock:
            for claim in claims.claims:
                self.claims.append(claim)
                if claim.task.endswith("held") and claim.invocation_id not in self.held:
                    self.held.add(claim.invocation_id)
                    holds.append(Hold(claim.invocation_id, time.time() + 0.05, "wait", "m-1"))
        return holds


URL = f"memory://{uuid.uuid4().hex}"
decide = Decide()
app = Fleet("hooks", broker_url=URL, state_url=URL, schedule_interval=0.05, extensions=[decide])


@app.task
def double(n: int) -> int:
    return n * 2


@app.task
def held(n: int) -> int:
    return n + 1


def registered(task: str) -> int:
    return len(app.runtime().state.find(Query(task=task)))


def test_a_reused_call_follows_the_existing_invocation_and_registers_nothing() -> None:
    first = double(21)
    again = double(21)
    assert again.id == first.id
    batch = double.parallelize([5, 21, 5, 6])
    ids = [i.id for i in batch.invocations]
    assert ids[1] == first.id and ids[0] == ids[2] and len(set(ids)) == 3
    assert registered(double.name) == 3  # 21, 5, 6: once each
    with running_worker(app):
        assert again.result(timeout=10) == 42
        assert batch.results(timeout=10) == [10, 42, 10, 12]
        # The existing invocation is final already: its outcome is read at once.
        assert double(6).result(timeout=10) == 12


def test_a_refusing_extension_stops_the_call() -> None:
    before = registered(double.name)
    decide.refuse = True
    try:
        with pytest.raises(ExtensionError, match="on purpose"):
            double(1000)
    finally:
        decide.refuse = False
    assert registered(double.name) == before


def test_a_hold_parks_the_invocation_blocked_and_its_release_brings_the_memo_back() -> None:
    with running_worker(app, threads=1):
        inv = held(1)
        assert inv.result(timeout=10) == 2
    history = inv.history
    statuses = [h.status for h in history]
    assert statuses[:4] == [Status.PENDING, Status.BLOCKED, Status.PENDING, Status.RUNNING]
    assert history[1].note == hold_note(Hold(inv.id, None, "wait", "m-1"))
    again = [c for c in decide.claims if c.invocation_id == inv.id]
    assert [c.memo for c in again] == ["", "m-1"]
    assert again[1].created > 0


def test_a_hold_frees_the_slot_for_other_work() -> None:
    # One thread: while the held call waits, another call runs in its slot.
    with running_worker(app, threads=1):
        first = held(10)
        other = double(7)
        assert other.result(timeout=10) == 14
        assert first.result(timeout=10) == 11
    wait_until(lambda: registered(held.name) >= 1, timeout=1)


def test_the_hold_note_round_trips_its_memo() -> None:
    assert hold_memo(hold_note(Hold("i", None, "rate: x [y]", "rate:1.5"))) == "rate:1.5"
    assert hold_memo(hold_note(Hold("i", None, "plain"))) == ""
    assert hold_memo("no memo here]") == ""


def test_the_envelope_carries_creation_and_memo_only_when_released_from_a_hold() -> None:
    state = app.runtime().state
    inv = held(99)
    (record,) = state.get([inv.id])
    plain = from_record(record)
    assert (plain.created, plain.memo) == (0.0, "")
    assert unpack(pack(plain)) == plain


def test_unused_hooks_are_not_called_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet import _screen
    from fleet.extensions import Dispatcher
    from fleet.worker import _holds

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unused hook was called")

    url = f"memory://{uuid.uuid4().hex}"
    bare = Fleet("bare", broker_url=url, state_url=url)
    bare.dispatcher = Dispatcher([])  # no extension at all: every hook tuple is empty
    monkeypatch.setattr(_screen, "screen", boom)
    monkeypatch.setattr(_holds, "ask", boom)
    plain = bare.task(name="pkg.plain")(lambda n: n + 1)
    with running_worker(bare):
        assert plain(1).result(timeout=10) == 2
        assert plain.parallelize([1, 2]).results(timeout=10) == [2, 3]
    bare.close()
