"""The baton: who drives a worker's consumer, and the standby ending long lends."""

from __future__ import annotations

import threading

import pytest

from fleet.worker.baton import Baton, State
from tests.waiting import wait_until

DEADLINE = 10.0
NEVER = 60.0
"""A patience no lend in these tests outlasts, however slow the machine: no takeover."""


@pytest.fixture
def freed() -> list[int]:
    return []


@pytest.fixture
def baton(freed: list[int]) -> Baton:
    return Baton(lambda: freed.append(threading.get_ident()), patience=0.01, quiet=0.05)


@pytest.fixture
def patient(freed: list[int]) -> Baton:
    """A baton whose standby never takes a lend over."""
    return Baton(lambda: freed.append(threading.get_ident()), patience=NEVER, quiet=0.05)


def test_one_holder_at_a_time(baton: Baton) -> None:
    assert baton.take()
    assert not baton.take()
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(baton.drop()))
    thread.start()
    thread.join()
    assert other == [False] and baton.state is State.HELD  # only the holder drops it
    assert baton.drop()
    assert baton.state is State.FREE and not baton.drop()
    assert baton.take()


def test_short_lend_comes_back_without_waking_anyone(patient: Baton, freed: list[int]) -> None:
    baton = patient
    assert baton.take()
    for _ in range(100):
        baton.lend()
        assert baton.back()
    assert baton.state is State.HELD
    assert freed == [] and baton.takeovers == 0


def test_long_lend_is_taken_over_by_the_standby(baton: Baton, freed: list[int]) -> None:
    assert baton.take()
    baton.lend()
    wait_until(lambda: freed, "the standby to take over")
    assert freed[0] != threading.get_ident()  # the standby called on_free
    assert baton.state is State.FREE and baton.takeovers == 1
    assert not baton.back()  # this thread is an ordinary one now
    assert baton.take()  # and whoever on_free woke can drive


def test_pass_on_frees_at_once_in_the_lenders_thread(patient: Baton, freed: list[int]) -> None:
    # With a 10 ms patience, a slow start of the other thread let the standby free the
    # baton first (seen in CI); here only pass_on can free it.
    baton = patient
    assert baton.take()
    baton.lend()
    other = threading.Thread(target=baton.pass_on)  # not the lender: no effect
    other.start()
    other.join()
    assert baton.state is State.LENT and freed == []
    baton.pass_on()
    assert freed == [threading.get_ident()]
    assert baton.state is State.FREE and not baton.back()


def test_close_waits_for_the_holder_and_ends_a_lend(baton: Baton) -> None:
    assert baton.take()
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (baton.close(), closed.set()))
    closer.start()
    assert not closed.wait(0.05)  # HELD: close waits
    baton.drop()
    assert closed.wait(DEADLINE)
    assert baton.state is State.CLOSED and not baton.take()

    lent = Baton(lambda: None, patience=NEVER)
    assert lent.take()
    lent.lend()
    lent.close()  # LENT: closes at once, the lender finds out in back()
    assert not lent.back() and lent.state is State.CLOSED


def test_standby_sleeps_once_lends_stop(baton: Baton) -> None:
    assert baton.take()
    baton.lend()
    if not baton.back():  # a slow machine outlasted the 10 ms patience: take it again
        assert baton.take()
    wait_until(lambda: not baton._ticking, "the standby to go quiet")  # no timeout now
    before = baton.takeovers
    baton.lend()  # wakes it again
    wait_until(lambda: baton.takeovers == before + 1, "a takeover")
