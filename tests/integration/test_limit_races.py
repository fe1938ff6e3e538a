"""LimitStore races with real processes, on SQLite and on the MongoDB-wire server.

Job: show that the store alone (no hooks yet) keeps a TASK-mode permit to one holder,
a registration key to one owner, a line to its limit and a rate budget within its count,
whatever the number of processes racing.
Each child writes what it saw to a JSON file; the parent checks the whole run.
"""

from __future__ import annotations

import json
import time
import uuid
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest

from fleet.concurrency import RateLimit, limit_store
from fleet.state import open_state
from tests.processes import spawned

PROCESSES = 8
ATTEMPTS = 500
BUDGET = 40.0
"""Seconds a child of the registration-key race keeps trying, at most."""


@pytest.fixture(params=["sqlite", "mongo"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.db", {}
    url: str = request.getfixturevalue("mongo_db_url")  # from tests/conftest.py
    return url, {"connect_timeout": 30.0}


def _hold_in_child(go: Event, url: str, options: dict[str, Any], me: str, out: str) -> None:
    store = limit_store(open_state(url, **options))
    held: list[tuple[float, float]] = []
    go.wait(60)
    for i in range(ATTEMPTS):
        holder = f"{me}-{i}"
        if store.acquire("task:*", holder, limit=1, now=time.time()).acquired:
            start = time.time()
            # A store round trip while holding: the window a second holder would show in.
            assert store.permits("task:*", now=time.time()).holders == (holder,)
            end = time.time()
            released = store.release("task:*", holder, now=time.time())
            assert released == (), released
            held.append((start, end))
    Path(out).write_text(json.dumps(held))


def test_one_holder_at_a_time_across_processes(
    target: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = target
    limit_store(open_state(url, **options))  # tables / collections made before the race
    outs = [tmp_path / f"held{i}.json" for i in range(PROCESSES)]
    arglists = [(url, options, f"p{i}", str(out)) for i, out in enumerate(outs)]
    with spawned(_hold_in_child, arglists, timeout=120) as go:
        go.set()
    spans = sorted(tuple(span) for out in outs for span in json.loads(out.read_text()))
    holders = {out.name for out in outs if json.loads(out.read_text())}
    assert len(spans) >= 100 and len(holders) >= 2  # the permit kept changing hands
    assert most_at_once(spans) == 1


def _own_in_child(go: Event, url: str, options: dict[str, Any], me: str, out: str) -> None:
    store = limit_store(open_state(url, **options))
    owned: list[tuple[float, float]] = []
    go.wait(60)
    stop = time.monotonic() + BUDGET
    for i in range(ATTEMPTS):
        if time.monotonic() > stop:
            break  # a slow machine races for a while, not for a count (pytest-timeout)
        holder = f"{me}-{i}"
        if store.remember("reg:task:*", holder, now=time.time()).holder == holder:
            start = time.time()
            memo = store.recall("reg:task:*", now=time.time())
            assert memo is not None and memo.holder == holder, memo
            end = time.time()
            assert store.forget("reg:task:*", holder)
            owned.append((start, end))
    Path(out).write_text(json.dumps(owned))


def test_one_owner_of_a_registration_key_at_a_time_across_processes(
    target: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = target
    limit_store(open_state(url, **options))
    outs = [tmp_path / f"owned{i}.json" for i in range(PROCESSES)]
    arglists = [(url, options, f"p{i}", str(out)) for i, out in enumerate(outs)]
    with spawned(_own_in_child, arglists, timeout=120) as go:
        go.set()
    spans = sorted(tuple(span) for out in outs for span in json.loads(out.read_text()))
    owners = {out.name for out in outs if json.loads(out.read_text())}
    assert len(spans) >= 100 and len(owners) >= 2
    assert most_at_once(spans) == 1


def _take_in_child(go: Event, url: str, options: dict[str, Any], key: str, out: str) -> None:
    store = limit_store(open_state(url, **options))
    rate = RateLimit.parse("50/s")
    taken: list[tuple[float, float]] = []
    go.wait(60)
    for _ in range(50):
        now = time.time()
        taken.append((now, store.take(key, rate, now=now)))
    Path(out).write_text(json.dumps(taken))


def test_a_rate_of_50_per_second_holds_across_processes(
    target: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = target
    key = f"rate:{uuid.uuid4().hex}"
    outs = [tmp_path / f"taken{i}.json" for i in range(4)]
    arglists = [(url, options, key, str(out)) for out in outs]
    with spawned(_take_in_child, arglists, timeout=120) as go:
        go.set()
    taken = [tuple(t) for out in outs for t in json.loads(out.read_text())]
    assert len(taken) == 200
    assert all(at >= asked for asked, at in taken)  # never earlier than asked
    starts = sorted(at for _, at in taken)
    assert starts[-1] - starts[0] >= 3.0  # 200 starts at 50/s span about 4 s
    crowded = [(a, b) for a, b in zip(starts, starts[50:], strict=False) if b - a < 1.0]
    assert crowded == []  # no 1-second window holds more than 50


QUEUED = 40


def _queue_in_child(go: Event, url: str, options: dict[str, Any], me: str, out: str) -> None:
    store = limit_store(open_state(url, **options))
    held: list[tuple[float, float]] = []
    go.wait(60)
    for i in range(QUEUED):
        holder, since = f"{me}-{i}", time.time()
        # Join the line, then look again until handed the permit (a worker would be
        # woken instead; the looks are reads, the hand-over is the releaser's write).
        while not store.acquire("line", holder, limit=2, now=time.time(), since=since).acquired:
            pass
        start = time.time()
        assert holder in store.permits("line", now=time.time()).holders
        end = time.time()
        store.release("line", holder, now=time.time())
        held.append((start, end))
    Path(out).write_text(json.dumps(held))


def test_a_line_of_processes_never_has_more_than_the_limit(
    target: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = target
    limit_store(open_state(url, **options))
    outs = [tmp_path / f"held{i}.json" for i in range(PROCESSES)]
    arglists = [(url, options, f"p{i}", str(out)) for i, out in enumerate(outs)]
    with spawned(_queue_in_child, arglists, timeout=120) as go:
        go.set()
    spans = sorted(tuple(span) for out in outs for span in json.loads(out.read_text()))
    assert len(spans) == PROCESSES * QUEUED  # every one was served
    assert most_at_once(spans) <= 2


def most_at_once(spans: list[tuple[float, ...]]) -> int:
    """The most spans open at one instant (an end at the instant of a start counts as
    before it: spans are measured inside the holds, so true holds overlap more)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most
