"""The state machine, checked over every pair of statuses."""

from __future__ import annotations

import itertools

import pytest

from fleet.errors import InvalidTransitionError
from fleet.state import Change
from fleet.status import CLAIMABLE, FINAL, OWNED, TRANSITIONS, Status, allowed, check, sources

EXPECTED = {
    ("PENDING", "RUNNING"),
    ("PENDING", "CANCELLED"),
    ("PENDING", "BLOCKED"),
    ("PENDING", "FAILED"),
    ("PENDING", "PENDING"),
    ("SCHEDULED", "PENDING"),
    ("SCHEDULED", "CANCELLED"),
    ("RUNNING", "SUCCESS"),
    ("RUNNING", "FAILED"),
    ("RUNNING", "RETRY"),
    ("RUNNING", "PAUSED"),
    ("RUNNING", "CANCELLED"),
    ("RUNNING", "PENDING"),
    ("PAUSED", "RUNNING"),
    ("PAUSED", "PENDING"),
    ("PAUSED", "CANCELLED"),
    ("PAUSED", "FAILED"),
    ("RETRY", "PENDING"),
    ("RETRY", "CANCELLED"),
    ("BLOCKED", "PENDING"),
    ("BLOCKED", "CANCELLED"),
}

PAIRS = list(itertools.product(Status, Status))


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_every_pair(src: Status, dst: Status) -> None:
    expected = (src.value, dst.value) in EXPECTED
    assert allowed(src, dst) is expected
    if expected:
        check(src, dst)
        assert src in sources(dst)
    else:
        with pytest.raises(InvalidTransitionError) as info:
            check(src, dst)
        assert f"{src.value} -> {dst.value}" in str(info.value)
        assert src not in sources(dst)


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(Status)


def test_final_statuses_go_nowhere() -> None:
    assert FINAL == {Status.SUCCESS, Status.FAILED, Status.CANCELLED}
    for status in FINAL:
        assert status.final
        assert not TRANSITIONS[status]


def test_every_status_is_reachable_from_pending() -> None:
    seen, frontier = {Status.PENDING}, [Status.PENDING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Status) - {Status.SCHEDULED}  # SCHEDULED is an entry status


def test_owned_and_claimable() -> None:
    assert OWNED == {Status.RUNNING, Status.PAUSED}
    assert all(s.owned for s in OWNED)
    assert CLAIMABLE == {Status.PENDING}


def test_change_validates_its_transition() -> None:
    with pytest.raises(InvalidTransitionError, match="SUCCESS -> RUNNING"):
        Change("x", Status.RUNNING, frozenset({Status.SUCCESS}), by="w")
    with pytest.raises(ValueError, match="needs `by`"):
        Change("x", Status.RUNNING, frozenset({Status.PENDING}))
    change = Change("x", Status.RUNNING, frozenset({Status.PENDING}), by="w1")
    assert change.owner == "w1"
    assert Change("x", Status.SUCCESS, frozenset({Status.RUNNING}), by="w1").owner == ""


def test_failed_to_pending_only_as_an_operators_redrive() -> None:
    with pytest.raises(InvalidTransitionError, match="FAILED -> PENDING"):
        Change("i", Status.PENDING, frozenset({Status.FAILED}))
    Change("i", Status.PENDING, frozenset({Status.FAILED}), redrive=True)
    check(Status.FAILED, Status.PENDING, redrive=True)
    with pytest.raises(InvalidTransitionError):
        check(Status.SUCCESS, Status.PENDING, redrive=True)  # only what REDRIVES names
    assert not allowed(Status.FAILED, Status.PENDING)


def test_cancelled_to_pending_only_as_an_operators_retry() -> None:
    with pytest.raises(InvalidTransitionError, match="CANCELLED -> PENDING"):
        Change("i", Status.PENDING, frozenset({Status.CANCELLED}))
    Change("i", Status.PENDING, frozenset({Status.CANCELLED}), redrive=True)
    assert not allowed(Status.CANCELLED, Status.PENDING)
