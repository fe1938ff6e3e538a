"""The follow-up clears a confirmed invocation's deadline only if its outcome is late.

A fake runtime records the `clear_due` writes; `pending_timeout = 0.8` makes the grace
0.1 s (`pending_timeout / 8`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from fleet._followup import FollowUp
from tests.waiting import wait_until


class Store:
    def __init__(self) -> None:
        self.cleared: list[list[str]] = []
        self.lock = threading.Lock()

    def clear_due(self, ids: Sequence[str]) -> None:
        with self.lock:
            self.cleared.append(list(ids))

    def all(self) -> list[str]:
        with self.lock:
            return [i for batch in self.cleared for i in batch]


@pytest.fixture
def store() -> Store:
    return Store()


class App:  # what the follow-up reads of a `Fleet` (weakly referenced)
    settings = SimpleNamespace(pending_timeout=0.8)


@pytest.fixture
def follow(store: Store) -> Iterator[FollowUp]:
    app: Any = App()
    runtime: Any = SimpleNamespace(state=store, waiter=SimpleNamespace(on_outcomes=None))
    follow = FollowUp(app, runtime)
    assert runtime.waiter.on_outcomes == follow.settled
    yield follow
    follow.close()


def confirmed(*ids: str) -> list[Any]:
    return [SimpleNamespace(invocation_id=i) for i in ids]


def test_unsettled_ids_are_cleared_after_the_grace_in_one_batch(
    follow: FollowUp, store: Store
) -> None:
    follow.published(confirmed("a", "b", "c"))
    follow.settled(["b"])
    wait_until(store.all, "the deadlines to be cleared", timeout=10)
    assert store.cleared == [["a", "c"]]


def test_an_outcome_before_the_confirm_spares_the_write(follow: FollowUp, store: Store) -> None:
    follow.settled(["early"])
    follow.published(confirmed("early", "late"))
    wait_until(store.all, "the late deadline to be cleared", timeout=10)
    assert store.cleared == [["late"]]


def test_close_clears_whatever_is_unsettled(follow: FollowUp, store: Store) -> None:
    follow.published(confirmed("x"))
    follow.published(confirmed("y"))
    follow.settled(["y"])
    follow.close()
    assert store.cleared == [["x"]]


def test_settled_ids_cost_no_write(follow: FollowUp, store: Store) -> None:
    follow.published(confirmed("quick"))
    follow.settled(["quick"])
    follow.close()
    assert store.cleared == []
