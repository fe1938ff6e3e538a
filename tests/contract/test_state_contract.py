"""The StateStore contract (fleet.state), run against every backend in conftest.STATES."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fleet.errors import ConfigError, DuplicateInvocationError, InvalidTransitionError
from fleet.state import (
    BLOB_GRACE,
    Change,
    ErrorInfo,
    Expired,
    InvocationRecord,
    Query,
    RunnerRecord,
    StateStore,
    blob_reference,
)
from fleet.status import HistoryEntry, Status
from tests.processes import spawned

S = Status
T0 = 1_700_000_000.123456


def record(i: int | str, status: Status = S.PENDING, **fields: Any) -> InvocationRecord:
    rid = i if isinstance(i, str) else f"inv-{i:04d}"
    base: dict[str, Any] = {
        "task": "pkg.mod.task",
        "queue": "default",
        "args": b"\x91\x01",
        "codec": "msgpack",
        "created": T0 + (i if isinstance(i, int) else 0),
        "updated": T0,
        "history": (HistoryEntry(status, T0, "", "registered"),),
    }
    base.update(fields)
    return InvocationRecord(id=rid, status=status, **base)


def pass_time(seconds: float) -> None:
    """Let the wall clock move `seconds` past now (for expiry; a few ms at most)."""
    end = time.time() + seconds
    while time.time() <= end:
        pass


def claim(rid: str, by: str) -> Change:
    return Change(rid, S.RUNNING, frozenset({S.PENDING}), by=by, count_attempt=True)


def commit(rid: str, by: str, result: bytes) -> Change:
    return Change(rid, S.SUCCESS, frozenset({S.RUNNING}), by=by, expect_owner=by, result=result)


def test_unknown_option_is_rejected(state_target: Any) -> None:
    with pytest.raises(ConfigError, match="no_such_option"):
        state_target.open(no_such_option=1)


def test_register_and_get_round_trip(state: StateStore) -> None:
    full = record(
        1,
        call_key="k" * 64,
        owner="",
        result=b"\x00r",
        error=ErrorInfo("builtins.ValueError", "bad", "Traceback ...", b"\x91\xa3bad"),
        attempt=2,
        due=T0 + 60.000001,
        parent="inv-0000",
        reply_to="@fleet/abc/l1",
        waits_on=("inv-0002",),
        history=(HistoryEntry(S.PENDING, T0, "", "registered"), HistoryEntry(S.PENDING, T0 + 1)),
    )
    plain = record(2, error=ErrorInfo("x.Y", "m"))
    state.register([full, plain])
    assert state.get([full.id, plain.id]) == [full, plain]
    assert state.get(["missing", plain.id, full.id]) == [plain, full]
    assert state.get([]) == []


def test_register_refuses_a_taken_id(state: StateStore) -> None:
    state.register([record(1)])
    with pytest.raises(DuplicateInvocationError, match="inv-0001"):
        state.register([record(2), record(1, task="other")])
    assert state.get([record(1).id])[0].task == "pkg.mod.task"
    assert state.get([record(2).id]) == []  # the batch went in whole or not at all


def test_apply_cas_success_and_failure(state: StateStore) -> None:
    state.register([record(1), record(2, S.SCHEDULED)])
    assert state.apply([claim("inv-0001", "w1"), claim("inv-0002", "w1"), claim("nope", "w1")]) == [
        True,
        False,
        False,
    ]
    (got,) = state.get(["inv-0001"])
    assert (got.status, got.owner, got.attempt) == (S.RUNNING, "w1", 1)
    assert state.get(["inv-0002"])[0].status is S.SCHEDULED
    assert state.apply([claim("inv-0001", "w2")]) == [False]
    assert state.apply([]) == []


def test_invalid_transition_is_refused_before_writing() -> None:
    with pytest.raises(InvalidTransitionError):
        Change("x", S.PENDING, frozenset({S.SUCCESS}))


def test_sixteen_threads_claim_one_invocation_once(state: StateStore) -> None:
    state.register([record(1)])
    barrier = threading.Barrier(16)
    results: dict[str, bool] = {}

    def claimer(me: str) -> None:
        barrier.wait(30)
        results[me] = state.apply([claim("inv-0001", me)])[0]

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [me for me, won in results.items() if won]
    assert len(results) == 16
    assert len(winners) == 1
    assert state.get(["inv-0001"])[0].owner == winners[0]


def _claim_in_child(
    go: Any, url: str, options: dict[str, Any], ids: list[str], me: str, out: str
) -> None:
    from fleet.state import open_state

    store = open_state(url, **options)
    won: list[str] = []
    try:
        order = list(ids)
        random.shuffle(order)
        go.wait(60)
        for rid in order:
            if store.apply([claim(rid, me)])[0]:
                won.append(rid)
    finally:
        store.close()
        Path(out).write_text(json.dumps(won))


def test_processes_claim_each_invocation_once(state_target: Any, tmp_path: Path) -> None:
    if not state_target.cross_process:
        pytest.skip(f"{state_target.name} lives in one process")
    state = state_target.open()
    ids = [f"inv-{i:04d}" for i in range(200)]
    state.register([record(i) for i in range(200)])
    outs = [tmp_path / f"won{i}.json" for i in range(4)]
    arglists = [
        (state_target.url, state_target.options, ids, f"p{i}", str(out))
        for i, out in enumerate(outs)
    ]
    with spawned(_claim_in_child, arglists) as go:
        go.set()
    won = {f"p{i}": json.loads(out.read_text()) for i, out in enumerate(outs)}
    claimed = [rid for rids in won.values() for rid in rids]
    assert sorted(claimed) == ids
    owners = {r.id: r.owner for r in state.get(ids)}
    assert all(owners[rid] == me for me, rids in won.items() for rid in rids)
    assert all(r.attempt == 1 for r in state.get(ids))


def test_first_commit_wins(state: StateStore) -> None:
    state.register([record(1)])
    assert state.apply([claim("inv-0001", "w1")]) == [True]
    assert state.apply([commit("inv-0001", "w1", b"first")]) == [True]
    assert state.apply([commit("inv-0001", "w1", b"second")]) == [False]
    (got,) = state.get(["inv-0001"])
    assert (got.status, got.result) == (S.SUCCESS, b"first")


def test_expect_owner_is_enforced(state: StateStore) -> None:
    state.register([record(1)])
    state.apply([claim("inv-0001", "w1")])
    assert state.apply([commit("inv-0001", "w2", b"late duplicate")]) == [False]
    requeue = Change(
        "inv-0001",
        S.PENDING,
        frozenset({S.RUNNING}),
        by="recovery",
        expect_owner="w1",
        note="owner died",
    )
    assert state.apply([requeue]) == [True]
    (got,) = state.get(["inv-0001"])
    assert (got.status, got.owner, got.result) == (S.PENDING, "", None)


def test_history_in_order_with_by_and_note(state: StateStore) -> None:
    state.register([record(1)])
    steps = [
        (claim("inv-0001", "w1"), T0 + 1),
        (
            Change(
                "inv-0001",
                S.PAUSED,
                frozenset({S.RUNNING}),
                by="w1",
                expect_owner="w1",
                waits_on=("a", "b"),
                note="waits",
            ),
            T0 + 2,
        ),
        (Change("inv-0001", S.RUNNING, frozenset({S.PAUSED}), by="w1", expect_owner="w1"), T0 + 3),
        (
            Change(
                "inv-0001",
                S.RETRY,
                frozenset({S.RUNNING}),
                by="w1",
                expect_owner="w1",
                due=T0 + 100.5,
                note="retry 2/5",
                error=ErrorInfo("builtins.OSError", "io", "tb", None),
            ),
            T0 + 4,
        ),
        (Change("inv-0001", S.PENDING, frozenset({S.RETRY}), note="due"), T0 + 5),
    ]
    for change, at in steps:
        assert state.apply([change], at=at) == [True]
        if change.to is S.PAUSED:
            assert state.get(["inv-0001"])[0].waits_on == ("a", "b")
    (got,) = state.get(["inv-0001"])
    assert got.history == (
        HistoryEntry(S.PENDING, T0, "", "registered"),
        HistoryEntry(S.RUNNING, T0 + 1, "w1", ""),
        HistoryEntry(S.PAUSED, T0 + 2, "w1", "waits"),
        HistoryEntry(S.RUNNING, T0 + 3, "w1", ""),
        HistoryEntry(S.RETRY, T0 + 4, "w1", "retry 2/5"),
        HistoryEntry(S.PENDING, T0 + 5, "", "due"),
    )
    assert (got.status, got.owner, got.waits_on, got.updated) == (S.PENDING, "", (), T0 + 5)
    assert (got.due, got.attempt) == (T0 + 100.5, 1)
    assert got.error == ErrorInfo("builtins.OSError", "io", "tb", None)


def test_apply_many_changes_in_order(state: StateStore) -> None:
    state.register([record(i) for i in range(100)])
    changes = [claim(f"inv-{i:04d}", "w") for i in range(100)]
    changes.append(claim("inv-0000", "other"))  # sees the first change of this batch
    changes.append(commit("inv-0001", "w", b"done"))
    before = time.time()
    assert state.apply(changes) == [True] * 100 + [False, True]
    got = state.get(["inv-0000", "inv-0001"])
    assert [r.status for r in got] == [S.RUNNING, S.SUCCESS]
    assert got[0].updated >= before
    assert got[1].history[-1].at == got[1].updated


def test_clear_due_clears_pending_deadlines_only(state: StateStore) -> None:
    state.register(
        [record(1, due=T0 + 5), record(2, due=T0 + 5), record(3, S.SCHEDULED, due=T0 + 5)]
    )
    state.clear_due(["inv-0001", "inv-0003", "inv-0001", "no-such-id"])
    state.clear_due([])
    one, two, three = state.get(["inv-0001", "inv-0002", "inv-0003"])
    assert (one.due, two.due, three.due) == (None, T0 + 5, T0 + 5)
    assert len(one.history) == 1  # bookkeeping, not a status change
    stale = state.find(Query(statuses=[S.PENDING], due_before=T0 + 10))
    assert [r.id for r in stale] == ["inv-0002"]  # recovery no longer sees a confirmed one
    # A later requeue sets a deadline again.
    again = Change("inv-0001", S.PENDING, frozenset({S.PENDING}), by="r", due=T0 + 9)
    assert state.apply([again]) == [True]
    assert state.get(["inv-0001"])[0].due == T0 + 9


def test_refund_attempt_gives_back_a_counted_attempt(state: StateStore) -> None:
    state.register([record(1)])
    assert state.apply([claim("inv-0001", "w1")]) == [True]
    requeue = Change(
        "inv-0001",
        S.PENDING,
        frozenset({S.RUNNING}),
        by="w1",
        expect_owner="w1",
        refund_attempt=True,
    )
    assert state.apply([requeue]) == [True]
    assert state.get(["inv-0001"])[0].attempt == 0
    with pytest.raises(ValueError, match="refund"):
        Change(
            "x", S.RUNNING, frozenset({S.PENDING}), by="w", count_attempt=True, refund_attempt=True
        )


def test_counts_by_status(state: StateStore) -> None:
    state.register([record(i) for i in range(5)] + [record(9, S.SCHEDULED)])
    state.apply([claim("inv-0000", "w"), claim("inv-0001", "w")])
    counts = state.counts()
    assert set(counts) == set(Status)
    assert (counts[S.PENDING], counts[S.RUNNING], counts[S.SCHEDULED]) == (3, 2, 1)
    assert counts[S.SUCCESS] == 0


def test_find(state: StateStore) -> None:
    state.register(
        [record(i, created=T0 - i) for i in range(6)]
        + [record(10, S.SCHEDULED, due=T0 + 10), record(11, S.SCHEDULED, due=T0 + 20)]
        + [record(12, S.BLOCKED, task="other.task", updated=T0 - 100)]
    )
    state.apply([claim("inv-0000", "a"), claim("inv-0001", "b"), claim("inv-0002", "c")])

    def ids(**query: Any) -> list[str]:
        return [r.id for r in state.find(Query(**query))]

    assert ids(statuses=[S.PENDING]) == ["inv-0005", "inv-0004", "inv-0003"]  # by created
    assert ids(statuses=[S.PENDING], limit=2) == ["inv-0005", "inv-0004"]
    assert ids(statuses=[S.RUNNING], owners=["a", "c"]) == ["inv-0002", "inv-0000"]
    assert ids(statuses=[S.RUNNING], not_owners=["a", "c"]) == ["inv-0001"]
    assert ids(statuses=[S.RUNNING], owners=[]) == []
    assert ids(statuses=[S.SCHEDULED], due_before=T0 + 15) == ["inv-0010"]
    assert ids(due_before=T0 + 30) == ["inv-0010", "inv-0011"]
    assert ids(task="other.task") == ["inv-0012"]
    assert ids(updated_before=T0 - 1) == ["inv-0012"]
    assert ids(updated_after=T0 - 100, updated_before=T0 - 99) == ["inv-0012"]
    assert ids(updated_after=T0 - 99, updated_before=T0 - 1) == []
    assert len(ids(updated_after=T0 - 99)) == 8
    assert len(ids()) == 9
    assert ids(statuses=[S.FAILED]) == []


def test_purge(state: StateStore) -> None:
    state.register([record(i) for i in range(7)])
    assert state.purge() == 7
    assert state.get(["inv-0001"]) == []
    assert state.counts()[S.PENDING] == 0


def test_leases(state: StateStore) -> None:
    assert state.lease("leader", "a", 60) is True
    assert state.lease("leader", "a", 60) is True  # renewed by its holder
    assert state.lease("leader", "b", 60) is False
    assert state.lease("other", "b", 60) is True
    state.release("leader", "b")  # not the holder: nothing happens
    assert state.lease("leader", "b", 60) is False
    state.release("leader", "a")
    assert state.lease("leader", "b", 0.002) is True
    pass_time(0.002)  # b's lease has expired
    assert state.lease("leader", "a", 60) is True
    assert state.lease("leader", "b", 60) is False


def test_eight_threads_race_for_a_lease(state: StateStore) -> None:
    barrier = threading.Barrier(8)
    results: dict[str, bool] = {}

    def racer(me: str) -> None:
        barrier.wait(30)
        results[me] = state.lease("leader", me, 60)

    threads = [threading.Thread(target=racer, args=(f"h{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 8
    assert sum(results.values()) == 1


def test_beat_and_runners_upsert(state: StateStore) -> None:
    sup = RunnerRecord(
        "sup-1",
        "supervisor",
        "host-a",
        100,
        T0,
        started=T0 - 5,
        queues=("default", "urgent"),
        info={"version": "0.1.0", "slots": 4},
    )
    proc = RunnerRecord(
        "proc-1", "process", "host-a", 101, T0, parent="sup-1", in_hand=("inv-0001",)
    )
    state.beat([sup, proc])
    assert sorted(state.runners(), key=lambda r: r.id) == [proc, sup]
    later = RunnerRecord("proc-1", "process", "host-a", 101, T0 + 5, parent="sup-1", stopped=True)
    state.beat([later])
    assert sorted(state.runners(), key=lambda r: r.id) == [later, sup]


def test_forget_runners_drops_old_heartbeats_only(state: StateStore) -> None:
    old = RunnerRecord("old", "process", "host-a", 1, T0 - 100, stopped=True)
    dead = RunnerRecord("dead", "process", "host-b", 2, T0 - 50)
    fresh = RunnerRecord("fresh", "supervisor", "host-a", 3, T0)
    state.beat([old, dead, fresh])
    assert state.forget_runners(T0 - 10) == 2
    assert state.runners() == [fresh]
    assert state.forget_runners(T0 - 10) == 0


def test_blobs_are_content_addressed(state: StateStore) -> None:
    state.put_blobs([("k1", b"\x00one"), ("k2", b"two")])
    state.put_blobs([("k1", b"ignored"), ("k3", b"")])
    assert state.get_blob("k1") == b"\x00one"
    assert state.get_blob("k2") == b"two"
    assert state.get_blob("k3") == b""
    assert state.get_blob("missing") is None


def test_expire_deletes_finished_invocations_older_than_the_cutoff_in_batches(
    state: StateStore,
) -> None:
    now = time.time()
    old, recent = now - 1000, now - 10
    finished = [
        record(i, status, updated=old)
        for i, status in enumerate([S.SUCCESS, S.FAILED, S.CANCELLED, S.SUCCESS, S.FAILED])
    ]
    kept = [
        record(10, S.SUCCESS, updated=recent),  # finished, but within retention
        record(11, S.PENDING, updated=old),  # old, but not finished
        record(12, S.RUNNING, updated=old, owner="w1"),
        record(13, S.SCHEDULED, updated=old, due=now + 86400),
    ]
    state.register([*finished, *kept])
    assert state.expire(now - 100, limit=3).invocations == 3
    assert state.expire(now - 100, limit=3).invocations == 2
    assert state.expire(now - 100, limit=3).invocations == 0
    assert [r.id for r in state.get([r.id for r in finished + kept])] == [r.id for r in kept]
    assert state.expire(now - 100, limit=0).invocations == 0


def test_expire_collects_large_values_no_invocation_refers_to(state: StateStore) -> None:
    state.put_blobs([(k, k.encode() * 3) for k in ("args", "result", "free", "gone", "sched")])
    state.register(
        [
            record("uses-args", args=blob_reference("args")),
            record("sched", S.SCHEDULED, args=blob_reference("sched"), due=time.time() + 1e6),
            record("gone", S.SUCCESS, args=blob_reference("gone"), updated=T0),
            record("uses-result"),
        ]
    )
    # The result refers to a blob and is committed after the cutoff: it stays.
    later = time.time() + 3 * BLOB_GRACE
    assert state.apply([claim("uses-result", "w1")]) == [True]
    done = commit("uses-result", "w1", blob_reference("result"))
    assert state.apply([done], at=later) == [True]

    # Within the grace period no blob is collected, referenced or not; "gone" expires
    # (the SUCCESS of "uses-result" is newer than the cutoff).
    assert state.expire(time.time(), limit=100) == Expired(invocations=1, blobs=0)
    assert state.get_blob("free") is not None and state.get_blob("gone") is not None

    before = time.time() + BLOB_GRACE + 60
    assert state.expire(before, limit=100) == Expired(invocations=0, blobs=2)
    assert state.get_blob("free") is None and state.get_blob("gone") is None
    for key in ("args", "result", "sched"):
        assert state.get_blob(key) == key.encode() * 3, key
    assert state.expire(before, limit=100) == Expired(0, 0)


def test_storing_a_value_again_restarts_its_grace(state: StateStore) -> None:
    state.put_blobs([("k", b"v")])
    state.put_blobs([("k", b"v")])
    # Collected once the grace has passed since it was last stored, not before.
    assert state.expire(time.time() + BLOB_GRACE / 4, limit=10).blobs == 0
    assert state.expire(time.time() + BLOB_GRACE + 60, limit=10).blobs == 1
    assert state.get_blob("k") is None


def test_a_redrive_makes_a_failed_invocation_pending_again(state: StateStore) -> None:
    state.register([record(1, S.FAILED, updated=T0)])
    redrive = Change(
        "inv-0001", S.PENDING, frozenset({S.FAILED}), note="requeued", due=T0 + 60, redrive=True
    )
    assert state.apply([redrive], at=T0 + 1) == [True]
    again = state.get(["inv-0001"])[0]
    assert (again.status, again.history[-1].note, again.due) == (S.PENDING, "requeued", T0 + 60)
    assert state.expire(time.time(), limit=10).invocations == 0  # no longer finished
    assert state.apply([claim("inv-0001", "w1")]) == [True]
