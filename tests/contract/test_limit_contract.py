"""The LimitStore contract (fleet.concurrency), run against every state store in STATES."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from fleet import concurrency
from fleet.concurrency import Grant, LimitStore, Memo, Permits, RateLimit, limit_store
from fleet.state import StateStore
from tests.contract.conftest import StateTarget

T0 = 1_700_000_000.0


@pytest.fixture
def store(state_target: StateTarget, state: StateStore) -> Iterator[LimitStore]:
    yield limit_store(state)
    if state_target.name == "memory":
        concurrency.drop(state_target.url.partition("://")[2])


def test_a_free_permit_is_granted_and_a_try_on_a_full_key_is_refused(store: LimitStore) -> None:
    assert store.acquire("k", "a", limit=1, now=T0) == Grant(True, ("a",))
    assert store.acquire("k", "b", limit=1, now=T0) == Grant(False, ("a",))
    assert store.permits("k", now=T0) == Permits(("a",), ())
    assert store.acquire("other", "b", limit=1, now=T0).acquired


def test_acquire_is_idempotent_for_a_holder(store: LimitStore) -> None:
    assert store.acquire("k", "a", limit=1, now=T0).acquired
    assert store.acquire("k", "a", limit=1, now=T0 + 1, since=T0).acquired
    assert store.permits("k", now=T0 + 1) == Permits(("a",), ())


def test_a_limit_of_n_grants_n(store: LimitStore) -> None:
    for h in "abc":
        assert store.acquire("k", h, limit=3, now=T0).acquired
    grant = store.acquire("k", "d", limit=3, now=T0, since=T0)
    assert grant == Grant(False, ("a", "b", "c"), position=1)


def test_the_line_is_served_oldest_first_and_a_release_hands_over(store: LimitStore) -> None:
    assert store.acquire("k", "a", limit=1, now=T0).acquired
    for holder, since in (("b", T0 + 5), ("c", T0 + 3), ("d", T0 + 4)):
        assert not store.acquire("k", holder, limit=1, now=T0 + 6, since=since).acquired
    assert store.permits("k", now=T0 + 6) == Permits(("a",), ("c", "d", "b"))
    assert store.acquire("k", "b", limit=1, now=T0 + 6, since=T0 + 5).position == 3
    assert store.release("k", "a", now=T0 + 7) == ("c",)
    assert store.permits("k", now=T0 + 7) == Permits(("c",), ("d", "b"))
    assert store.acquire("k", "c", limit=1, now=T0 + 7, since=T0 + 3).acquired
    assert store.release("k", "c", now=T0 + 8) == ("d",)
    assert store.release("k", "d", now=T0 + 9) == ("b",)
    assert store.release("k", "b", now=T0 + 9) == ()
    assert store.permits("k", now=T0 + 9) == Permits()


def test_a_newcomer_never_takes_the_permit_a_waiter_is_owed(store: LimitStore) -> None:
    assert store.acquire("k", "a", limit=2, now=T0).acquired
    assert store.acquire("k", "b", limit=2, now=T0).acquired
    assert not store.acquire("k", "old", limit=2, now=T0, since=T0 - 10).acquired
    assert store.release("k", "a", now=T0 + 1) == ("old",)
    assert not store.acquire("k", "new", limit=2, now=T0 + 1).acquired
    # Equal `since`: ordered by holder, so every store agrees.
    assert not store.acquire("k", "y", limit=2, now=T0 + 1, since=T0).acquired
    assert not store.acquire("k", "x", limit=2, now=T0 + 1, since=T0).acquired
    assert store.permits("k", now=T0 + 1).waiters == ("x", "y")


def test_a_waiter_that_only_tries_keeps_its_place(store: LimitStore) -> None:
    store.acquire("k", "a", limit=1, now=T0)
    store.acquire("k", "b", limit=1, now=T0, since=T0)
    assert store.acquire("k", "b", limit=1, now=T0 + 1) == Grant(False, ("a",), position=1)
    assert store.release("k", "a", now=T0 + 2) == ("b",)


def test_a_waiter_that_leaves_the_line_is_not_woken(store: LimitStore) -> None:
    store.acquire("k", "a", limit=1, now=T0)
    store.acquire("k", "b", limit=1, now=T0, since=T0)
    store.acquire("k", "c", limit=1, now=T0, since=T0 + 1)
    assert store.release("k", "b", now=T0) == ()
    assert store.release("k", "a", now=T0) == ("c",)
    assert store.release("k", "nobody", now=T0) == ()
    assert store.release("unknown", "a", now=T0) == ()


def test_an_expired_permit_is_taken_over_and_wakes_the_oldest_waiter(store: LimitStore) -> None:
    assert store.acquire("k", "a", limit=1, now=T0, ttl=10).acquired
    assert store.permits("k", now=T0 + 10) == Permits((), ())
    assert store.acquire("k", "b", limit=1, now=T0 + 11).acquired
    store.acquire("j", "a", limit=1, now=T0, ttl=10)
    store.acquire("j", "w", limit=1, now=T0 + 1, ttl=10, since=T0 + 1)
    grant = store.acquire("j", "late", limit=1, now=T0 + 20, ttl=10, since=T0 + 20)
    assert grant == Grant(False, ("w",), position=1, woken=("w",))


def test_take_reserves_within_the_rate_and_never_goes_back(store: LimitStore) -> None:
    rate = RateLimit(3, 1.0)
    assert [store.take("r", rate, now=T0) for _ in range(3)] == [T0, T0, T0]
    assert store.take("r", rate, now=T0) == T0 + 1.0
    assert store.take("r", rate, now=T0 + 0.5) == T0 + 1.0
    assert store.take("r", rate, now=T0 + 0.2) == T0 + 1.0  # a clock behind: not earlier
    assert store.take("r", rate, now=T0 + 0.5) == T0 + 2.0
    assert store.take("r", rate, now=T0 + 5) == T0 + 5
    assert store.take("other", rate, now=T0) == T0


def test_take_never_puts_more_than_count_in_a_window(store: LimitStore) -> None:
    rate = RateLimit.parse("5/2s")
    times = [store.take("r", rate, now=T0 + i * 0.1) for i in range(40)]
    assert times == sorted(times)
    assert all(b - a >= 2.0 for a, b in zip(times, times[5:], strict=False))


def test_remember_keeps_the_first_owner(store: LimitStore) -> None:
    first = store.remember("m", "a", now=T0, ttl=60, value="v1")
    assert first == Memo("m", "a", "v1", T0, T0 + 60)
    assert store.remember("m", "b", now=T0 + 1, ttl=60, value="v2") == first
    assert store.recall("m", now=T0 + 59) == first
    assert store.recall("nothing", now=T0) is None


def test_an_expired_memo_is_replaced_and_forget_is_compare_and_set(store: LimitStore) -> None:
    store.remember("m", "a", now=T0, ttl=60)
    assert store.recall("m", now=T0 + 60) is None
    assert store.remember("m", "b", now=T0 + 60).holder == "b"
    assert store.recall("m", now=T0 + 10**6) == Memo("m", "b", "", T0 + 60, 0.0)
    assert not store.forget("m", "a")
    assert store.forget("m", "b")
    assert store.recall("m", now=T0) is None
    assert not store.forget("m", "b")
    assert store.remember("m", "c", now=T0).holder == "c"


def test_other_instances_see_the_same_limits(state_target: StateTarget, store: LimitStore) -> None:
    other = limit_store(state_target.open())
    store.acquire("k", "a", limit=1, now=T0)
    assert not other.acquire("k", "b", limit=1, now=T0).acquired
    store.remember("m", "a", now=T0)
    assert other.remember("m", "b", now=T0).holder == "a"


def test_racing_threads_have_one_owner_and_one_holder(store: LimitStore) -> None:
    owners: list[str] = []
    grants: list[bool] = []
    go = threading.Barrier(8)

    def race(i: int) -> None:
        go.wait()
        owners.append(store.remember("m", f"h{i}", now=T0).holder)
        grants.append(store.acquire("k", f"h{i}", limit=1, now=T0).acquired)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(owners)) == 1 and len(owners) == 8
    assert grants.count(True) == 1


def test_purge_deletes_only_what_no_decision_needs(store: LimitStore) -> None:
    store.remember("old", "a", now=T0, ttl=10)
    store.remember("live", "a", now=T0, ttl=100)
    store.remember("forever", "a", now=T0)
    rate = RateLimit(2, 10.0)
    store.take("quiet", rate, now=T0)
    store.take("busy", rate, now=T0 + 50)
    assert store.purge(now=T0 + 10, rates_before=T0 + 40) == 2
    assert store.recall("old", now=T0) is None
    assert store.recall("live", now=T0) is not None and store.recall("forever", now=T0)
    assert store.take("busy", rate, now=T0 + 50) == T0 + 50  # kept: still counts
    assert store.take("busy", rate, now=T0 + 50) == T0 + 60
    assert store.purge(now=T0 + 10, rates_before=T0 + 40) == 0
