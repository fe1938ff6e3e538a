"""A flood of messages without invocation records must not starve real work.

Such messages are held for their record a while (a producer on RabbitMQ writes it while
the message travels), but never more than the worker's prefetch at once, never on a
slot, and each holds back new receives only briefly; then they are dead-lettered with
the reason. Run on the memory and the embedded SQLite stacks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Fleet
from fleet._envelope import Envelope, pack
from fleet.broker import Message
from fleet.codec import encode_call
from fleet.testing.worker import running_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)
FLOOD = 60


def add_one(x: int) -> int:
    return x + 1


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    if request.param == "memory":
        url = f"memory://{uuid.uuid4().hex}"
    else:
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    app = Fleet(broker_url=url, state_url=url, shutdown_grace=2)
    app.task(add_one)
    yield app
    app.close()


def test_flood_without_records_does_not_starve_real_work(app: Fleet) -> None:
    runtime = app.runtime()
    queue = app.settings.default_queue
    task = app.tasks[f"{__name__}.add_one"]
    args = encode_call(app.codec, task.name, (0,), {})
    flood = [Envelope(uuid.uuid4().hex, task.name, args, app.codec.name) for _ in range(FLOOD)]
    with running_worker(app, threads=2) as worker:
        worker.early.grace = 2.0  # each waits 2 s at most for its record
        runtime.broker.publish([Message(queue, pack(e), e.id) for e in flood])
        real = [task(i) for i in range(5)]  # queued behind the whole flood
        # Well before the grace of the whole flood could run out (2 slots x 2 s at a
        # time: 60 s), which is what real work waited when each held message kept a slot.
        assert [r.result(timeout=30) for r in real] == [i + 1 for i in range(5)]
        wait_until(lambda: runtime.broker.stats(queue).dead == FLOOD, "the dead letters", 60)
        assert len(worker.early) == 0
    letters = runtime.broker.dead_letters(queue, limit=FLOOD)
    assert sorted(letter.body for letter in letters) == sorted(pack(e) for e in flood)
    assert all("no invocation record" in letter.reason for letter in letters)
    assert runtime.state.get([e.id for e in flood]) == []
