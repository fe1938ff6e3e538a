"""RabbitMQ restarts in the middle of a run: nothing accepted is lost.

Real `fleet worker` processes (2 x 4 threads) consume from a RabbitMQ node of this test
module's own, with the state in a SQLite file. Four producer threads submit 2,000
invocations while another thread stops and starts RabbitMQ; producers ride out the
outage (publishes are retried), workers and the result listener reconnect. Every
invocation must complete with the right value and exactly one committed outcome;
executions are counted (each run appends its id to a file per worker pid) and the
duplicates are reported.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from fleet import Status
from fleet.invocation import Group, Invocation
from fleet.testing.rabbitmq import RabbitMQServer, ServiceError
from fleet.testing.worker import WorkerCommand
from tests.services import unavailable

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(300)]
TOTAL, PRODUCERS = 2000, 4
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    """A node of this module's own: restarting the session's node would disturb others."""
    node = RabbitMQServer(base_dir=tmp_path_factory.mktemp("rabbitmq-restart"))
    try:
        node.start()
    except ServiceError as exc:  # pragma: no cover - no rabbitmq-server here
        unavailable("RabbitMQ (this module's node)", exc)
    yield node
    node.close()


@pytest.fixture
def tasks(
    server: RabbitMQServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    (tmp_path / "runs").mkdir()
    (tmp_path / "queues.yaml").write_text("default: restart\nqueues:\n  restart: {}\n")
    for key, value in {
        "FLEET__BROKER_URL": server.url,
        "FLEET__STATE_URL": f"sqlite:///{tmp_path}/fleet.db",
        "FLEET__QUEUES_FILE": str(tmp_path / "queues.yaml"),
        "FLEET__HEARTBEAT_INTERVAL": "0.5",
        "FLEET__LOG_LEVEL": "WARNING",
        "FLEET_TEST_EXEC_DIR": str(tmp_path / "runs"),
    }.items():
        monkeypatch.setenv(key, value)
    module = importlib.reload(importlib.import_module("tests.e2e.rabbitmq_tasks"))
    yield module
    module.app.close()


def test_rabbitmq_restart_mid_run_loses_nothing(
    server: RabbitMQServer, tasks: ModuleType, tmp_path: Path
) -> None:
    started = time.monotonic()
    handles: list[Invocation[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    outage: dict[str, float] = {}

    def produce(offset: int) -> None:
        try:
            for i in range(offset, TOTAL, PRODUCERS):
                handle = tasks.double(i)
                with lock:
                    handles.append(handle)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def restart() -> None:
        try:
            while len(handles) < TOTAL // 4 and not errors:
                time.sleep(0.005)  # waiting for the run to be well under way
            outage["from"] = time.monotonic()
            server.restart()
            outage["to"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)

    with WorkerCommand(
        "tests.e2e.rabbitmq_tasks:app", processes=2, threads=4, cwd=str(REPO)
    ) as worker:
        worker.wait_consumers(tasks.app, 2, queue="restart")
        server.wait_for_definitions("restart", "restart.urgent", "restart.dead", "restart.dlx")
        threads = [threading.Thread(target=produce, args=(n,)) for n in range(PRODUCERS)]
        threads.append(threading.Thread(target=restart))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert not errors, errors
        assert "to" in outage, "RabbitMQ was not restarted"
        assert len(handles) == TOTAL  # every submission was accepted, across the outage
        values = Group(handles).results(timeout=180)
        finished = time.monotonic()
    by_id = {h.id: h for h in handles}
    assert sorted(values) == [2 * i for i in range(TOTAL)]
    records = tasks.app.runtime().state.get(list(by_id))
    assert len(records) == TOTAL
    for record in records:
        assert record.status is Status.SUCCESS, (record.id, record.status, record.history)
        finals = [e for e in record.history if e.status.final]
        assert len(finals) == 1, (record.id, record.history)  # committed once
    runs: Counter[str] = Counter()
    for log in (tmp_path / "runs").glob("*.log"):
        runs.update(log.read_text().split())
    assert set(runs) == set(by_id)  # every invocation ran, nothing else did
    duplicates = sum(runs.values()) - TOTAL
    print(
        f"\nRabbitMQ restart e2e: {TOTAL} invocations in {finished - started:.1f}s; "
        "RabbitMQ down for "
        f"{outage['to'] - outage['from']:.1f}s (stop + start); "
        f"duplicate executions: {duplicates} "
        f"({sum(1 for n in runs.values() if n > 1)} invocations ran more than once)"
    )
