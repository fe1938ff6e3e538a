"""Races on the MongoDB state store between real processes (multiprocessing, spawn)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.state import Change, InvocationRecord
from fleet.state.mongo import MongoStateStore
from fleet.status import Status
from tests.processes import spawned

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(300)]
S = Status
PROCESSES = 8
LEASE = "race:leader"
TTL = 0.6
SLACK = 0.002
"""Server time ($$NOW) has millisecond resolution: an expiry may read up to 1 ms early."""


def _claimer(go: Any, url: str, me: str, ids: list[str], out: str) -> None:
    store = MongoStateStore(url, connect_timeout=30)
    won: list[str] = []
    try:
        order = list(ids)
        random.shuffle(order)
        go.wait(60)
        while order:  # one at a time and in batches, so both kinds of apply race
            size = random.choice((1, 1, 5, 25))
            batch, order = order[:size], order[size:]
            claims = [
                Change(rid, S.RUNNING, frozenset({S.PENDING}), by=me, count_attempt=True)
                for rid in batch
            ]
            won += [rid for rid, ok in zip(batch, store.apply(claims), strict=True) if ok]
    finally:
        store.close()
        Path(out).write_text(json.dumps(won))


def _leaser(go: Any, url: str, me: str, out: str, run_for: float) -> None:
    """Contend for the lease; while holding it renew a few times, then stop renewing
    (as if killed) and stay away past the expiry. Records what it believed it held:
    from the reply that granted the lease to the request time + TTL."""
    store = MongoStateStore(url, connect_timeout=30)
    held: list[tuple[float, float]] = []
    deaths: list[float] = []
    rng = random.Random(me)
    try:
        go.wait(60)
        end = time.time() + run_for
        renewals = 0
        while time.time() < end:
            asked = time.time()
            if store.lease(LEASE, me, TTL):
                held.append((time.time(), asked + TTL - SLACK))
                renewals += 1
                if renewals >= rng.randint(2, 5):
                    deaths.append(asked + TTL)  # stops renewing: lost at this expiry
                    renewals = 0
                    _pause(TTL * 1.5)
                    continue
                _pause(TTL / 5)
            else:
                renewals = 0
                _pause(TTL / 10)
    finally:
        store.close()
        Path(out).write_text(json.dumps({"held": held, "deaths": deaths}))


def _pause(seconds: float) -> None:
    time.sleep(seconds)  # the simulated runner's pace, not a wait for a condition


def _spawn(target: Callable[..., None], arglists: list[tuple[Any, ...]]) -> None:
    with spawned(target, arglists, timeout=240) as go:
        go.set()


@pytest.fixture
def store(mongo_db_url: str) -> Iterator[MongoStateStore]:
    store = MongoStateStore(mongo_db_url, connect_timeout=30)
    store.init()
    yield store
    store.close()


def test_eight_processes_claim_500_invocations_each_once(
    store: MongoStateStore, mongo_db_url: str, tmp_path: Path
) -> None:
    ids = [f"inv-{i:04d}" for i in range(500)]
    store.register([InvocationRecord(i, "t", "q", b"", "msgpack", S.PENDING) for i in ids])
    outs = [tmp_path / f"won{n}.json" for n in range(PROCESSES)]
    _spawn(_claimer, [(mongo_db_url, f"p{n}", ids, str(out)) for n, out in enumerate(outs)])
    won = {f"p{n}": json.loads(out.read_text()) for n, out in enumerate(outs)}
    claimed = [rid for rids in won.values() for rid in rids]
    assert sorted(claimed) == ids  # every one claimed, none twice
    records = {r.id: r for r in store.get(ids)}
    for me, rids in won.items():
        for rid in rids:
            record = records[rid]
            assert (record.owner, record.attempt, len(record.history)) == (me, 1, 1)


def test_eight_processes_never_share_a_lease(
    store: MongoStateStore, mongo_db_url: str, tmp_path: Path
) -> None:
    outs = [tmp_path / f"lease{n}.json" for n in range(PROCESSES)]
    _spawn(_leaser, [(mongo_db_url, f"h{n}", str(out), 6.0) for n, out in enumerate(outs)])
    runs = {f"h{n}": json.loads(out.read_text()) for n, out in enumerate(outs)}
    spans = sorted((start, end, me) for me, run in runs.items() for start, end in run["held"])
    assert len({me for _, _, me in spans}) >= 2, "the lease never changed hands"
    # Never two holders at once: a span may only overlap spans of the same holder.
    latest_end, latest_holder = 0.0, ""
    for start, end, me in spans:
        if me != latest_holder:
            assert start >= latest_end, f"{me} held the lease while {latest_holder} did"
        if end >= latest_end:
            latest_end, latest_holder = end, me
    # A holder that stops renewing loses the lease at its expiry: someone else gets it
    # after that, and soon after (contenders retry every TTL/10).
    takeovers = []
    for me, run in runs.items():
        for expiry in run["deaths"]:
            if spans[-1][0] > expiry + 2.0:  # not at the very end of the run
                later = [s for s, _, who in spans if who != me and s >= expiry - TTL]
                assert later, f"nobody took the lease over after {me} stopped renewing"
                takeovers.append(min(later) - expiry)
    assert len(takeovers) >= 3
    assert all(-SLACK <= delay <= 2.0 for delay in takeovers), takeovers
