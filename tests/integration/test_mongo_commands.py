"""MongoDB commands per invocation end to end: RabbitMQ, MongoDB, real `fleet worker`.

100 single calls, one at a time, to a `fleet worker` with 2 processes: the producer and
the workers together send at most 3 state-store commands per invocation (register,
claim, commit); heartbeats, leases and the leader's periodic scans are counted apart
(`fleet.testing.mongo_commands`). A quick call's confirmed publish costs no write that
clears its recovery deadline (`fleet._followup`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.mongo_e2e import measure
from fleet.testing import mongo_commands
from fleet.testing.rabbitmq import RabbitMQServer

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(600)]
CALLS = 100


def test_single_calls_cost_at_most_three_commands(
    rabbitmq: RabbitMQServer,
    mongo_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> None:
    queue = unique_name("cmds")  # a queue of its own on the shared node
    queues = tmp_path / "queues.yaml"
    queues.write_text(f"default: {queue}\nqueues:\n  {queue}: {{}}\n")
    work = tmp_path / "counts"
    work.mkdir()
    for name, value in {
        "FLEET__BROKER_URL": rabbitmq.url,
        "FLEET__STATE_URL": mongo_db_url,
        "FLEET__QUEUES_FILE": str(queues),
        "FLEET__DEFAULT_QUEUE": queue,
        "FLEET__CONNECT_TIMEOUT": "30",
    }.items():
        monkeypatch.setenv(name, value)
    mine, theirs = measure(CALLS, 2, rabbitmq.url, mongo_db_url, work)
    per = mongo_commands.per_invocation(mine + theirs, CALLS)
    assert per["total"] <= 3.0, per
    assert not [k for k in per if k.endswith("clear_due")], per
