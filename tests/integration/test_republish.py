"""Recovery republishes only what the broker never confirmed, never a waiting backlog.

A backlog older than `pending_timeout` with no worker consuming it: however many leader
ticks pass, the queue holds one message per invocation. A record registered without
its message being published (its producer died) is published again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet import Fleet
from fleet.worker.leader import Leader
from tests.integration.rabbitmq_tasks import make_app
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
PENDING_TIMEOUT = 0.5


def parked(n: int) -> int:
    return n


@pytest.fixture(params=["sqlite", "rabbitmq"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[Fleet]:
    settings = {"pending_timeout": PENDING_TIMEOUT, "recovery_interval": 0.1}
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
        made = Fleet(broker_url=url, state_url=url, **settings)
    else:
        server = request.getfixturevalue("rabbitmq")
        made = make_app(server.url, tmp_path, unique_name("republish"), **settings)
    yield made
    made.close()


def test_backlog_is_not_republished_but_an_unconfirmed_record_is(app: Fleet) -> None:
    task = app.task(parked)
    backlog = [task(n) for n in range(5)]
    records, _ = app.prepare(task, [task.bind([99], {})])
    app.runtime().state.register(records)  # its producer died before publishing
    queue = app.queues.route(task.name, None)
    broker = app.runtime().broker
    # On RabbitMQ the calls returned before their confirms (publish_confirm background).
    wait_until(lambda: broker.stats(queue).ready == 5, "the backlog in the queue")
    app.close()  # the producer exits (a clean exit records its confirms)

    leader = Leader(app, "test-leader")
    start = time.time()
    for tick in range(1, 6):
        leader.tick(now=start + tick * 4 * PENDING_TIMEOUT)  # each past every deadline
        app.close()  # the leader's own confirms are recorded before the next tick
    assert app.runtime().broker.stats(queue).ready == len(backlog) + 1
    lone = app.record(records[0].id)
    notes = [h.note for h in lone.history]
    assert notes.count("pending past its deadline; published again") == 1
    assert all(
        "published again" not in h.note for inv in backlog for h in app.record(inv.id).history
    )
