"""A 3-node RabbitMQ cluster loses the node that leads the task queue mid-run.

Three RabbitMQ nodes of this module's own (`fleet.testing.rabbitmq_cluster`) are
clustered; fleet declares its quorum queues there, so each has a replica on every node.
The broker URL names all three nodes, the leader of the task queue first, so that the
producers, the workers and the result listener all start on the node that is killed.
Real `fleet worker` processes (2 x 4 threads) run 2,000 invocations submitted by four
producer threads; when a quarter is submitted, the leader node is SIGKILLed; once the
run is through the failover it is started again and rejoins. Nothing may be lost, every
invocation must commit exactly one outcome, and nobody is told to reconnect: the clients
fail over to the surviving nodes by themselves. Printed: lost, duplicate executions,
failover time (SIGKILL -> the result of an invocation submitted right after it).
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
from fleet.testing.rabbitmq import ServiceError
from fleet.testing.rabbitmq_cluster import RabbitMQCluster
from fleet.testing.worker import WorkerCommand
from tests.services import unavailable

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(400)]
TOTAL, PRODUCERS, QUEUE = 2000, 4, "cluster"
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitMQCluster]:
    nodes = RabbitMQCluster(3)
    try:
        nodes.start()
    except ServiceError as exc:  # pragma: no cover - no rabbitmq-server here
        unavailable("a 3-node RabbitMQ cluster", exc)
    yield nodes
    nodes.close()


def _load(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> ModuleType:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return importlib.reload(importlib.import_module("tests.e2e.rabbitmq_tasks"))


@pytest.fixture
def tasks(
    cluster: RabbitMQCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    (tmp_path / "runs").mkdir()
    (tmp_path / "queues.yaml").write_text(f"default: {QUEUE}\nqueues:\n  {QUEUE}: {{}}\n")
    env = {
        "FLEET__BROKER_URL": cluster.url,
        "FLEET__STATE_URL": f"sqlite:///{tmp_path}/fleet.db",
        "FLEET__QUEUES_FILE": str(tmp_path / "queues.yaml"),
        "FLEET__HEARTBEAT_INTERVAL": "0.5",
        "FLEET__LOG_LEVEL": "WARNING",
        "FLEET_TEST_EXEC_DIR": str(tmp_path / "runs"),
    }
    module = _load(monkeypatch, env)
    module.app.runtime().declare([QUEUE])  # declared on the cluster: replicas everywhere
    module.app.close()
    leader = cluster.leader_of(QUEUE)
    members = cluster.members_of(QUEUE)
    assert members == {n.node_name for n in cluster.nodes}, members  # replicated on all 3
    # The leader first: every client starts on the node the test kills.
    env["FLEET__BROKER_URL"] = cluster.url_from(leader)
    module = _load(monkeypatch, env)
    yield module
    module.app.close()


def _check_committed_once(
    tasks: ModuleType, handles: list[Invocation[int]], probes: list[str], tmp_path: Path
) -> tuple[int, int]:
    """Every invocation SUCCESS with one final entry, and ran; (lost, duplicate runs)."""
    by_id = {h.id: h for h in handles}
    records = tasks.app.runtime().state.get(list(by_id))
    lost = TOTAL - sum(1 for r in records if r.status is Status.SUCCESS)
    assert lost == 0, [(r.id, r.status) for r in records if r.status is not Status.SUCCESS]
    for record in records:
        finals = [e for e in record.history if e.status.final]
        assert len(finals) == 1, (record.id, record.history)  # committed once
    runs: Counter[str] = Counter()
    for log in (tmp_path / "runs").glob("*.log"):
        runs.update(log.read_text().split())
    assert set(runs) == set(by_id) | set(probes)  # every invocation ran, nothing else did
    runs.pop(probes[0])
    return lost, sum(runs.values()) - TOTAL


def test_cluster_loses_the_queue_leader_mid_run(
    cluster: RabbitMQCluster, tasks: ModuleType, tmp_path: Path
) -> None:
    leader = cluster.leader_of(QUEUE)
    started = time.monotonic()
    handles: list[Invocation[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    marks: dict[str, float] = {}
    probes: list[str] = []

    def produce(offset: int) -> None:
        try:
            for i in range(offset, TOTAL, PRODUCERS):
                handle = tasks.double(i)
                with lock:
                    handles.append(handle)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def crash() -> None:
        try:
            while len(handles) < TOTAL // 4 and not errors:
                time.sleep(0.005)  # waiting for the run to be well under way
            marks["killed"] = time.monotonic()
            cluster.kill(leader)
            probe = tasks.double(-1)  # submitted after the crash: fails over to publish
            probes.append(probe.id)
            assert probe.result(timeout=120) == -2
            marks["failed over"] = time.monotonic()
            marks["new leader"] = float(cluster.leader_of(QUEUE) is not leader)
            cluster.restart(leader)
            marks["rejoined"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)

    with WorkerCommand(
        "tests.e2e.rabbitmq_tasks:app", processes=2, threads=4, cwd=str(REPO)
    ) as worker:
        worker.wait_consumers(tasks.app, 2, queue=QUEUE)
        threads = [threading.Thread(target=produce, args=(n,)) for n in range(PRODUCERS)]
        threads.append(threading.Thread(target=crash))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)
        assert not errors, errors
        assert "rejoined" in marks, "the killed node did not come back"
        assert marks["new leader"] == 1.0  # the queue is led by a surviving node now
        assert len(handles) == TOTAL  # every submission was accepted, across the crash
        values = Group(handles).results(timeout=180)
        finished = time.monotonic()
    assert sorted(values) == [2 * i for i in range(TOTAL)]
    lost, duplicates = _check_committed_once(tasks, handles, probes, tmp_path)
    print(
        f"\nRabbitMQ cluster e2e: {TOTAL} invocations on 3 nodes in "
        f"{finished - started:.1f}s; leader {leader.node_name} SIGKILLed; lost: {lost}; "
        f"committed twice: 0; duplicate executions: {duplicates}; failover (kill -> "
        f"result of a call made after it): {marks['failed over'] - marks['killed']:.1f}s; "
        f"node back in the cluster after {marks['rejoined'] - marks['failed over']:.1f}s"
    )
