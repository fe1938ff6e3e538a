"""Leader election by lease: one leader among 1 or 50 runners, handed over on expiry."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from fleet import Fleet
from fleet.worker.leader import Leader


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Fleet:
    url = (
        f"memory://{uuid.uuid4().hex}"
        if request.param == "memory"
        else (f"sqlite:///{tmp_path / 'fleet.db'}")
    )
    return Fleet(broker_url=url, state_url=url, lease_ttl=0.5)


@pytest.mark.parametrize("runners", [1, 50])
def test_exactly_one_leader_and_handover(app: Fleet, runners: int) -> None:
    leaders = [Leader(app, f"runner-{i}") for i in range(runners)]
    for _ in range(3):
        for leader in leaders:
            leader.tick()
        assert sum(leader.leading for leader in leaders) == 1
    first = next(leader for leader in leaders if leader.leading)
    if runners == 1:
        return
    # The leader stops renewing (killed): another runner takes over after the expiry.
    others = [leader for leader in leaders if leader is not first]
    deadline = time.monotonic() + 10
    while not any(leader.leading for leader in others):
        assert time.monotonic() < deadline, "lease was never handed over"
        for leader in others:
            leader.tick()
    assert sum(leader.leading for leader in others) == 1
    first.tick()  # the old leader comes back: it must not lead alongside the new one
    assert not first.leading
