"""`fleet worker --metrics-port` over the embedded SQLite stack: a real supervisor with
two worker processes runs invocations (some failing and retried, one dead-lettered);
`/metrics` is scraped over HTTP and parsed with prometheus_client's own parser, and its
counters must match what ran."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

from fleet import Fleet, Status
from fleet.testing._procs import free_port
from fleet.testing.worker import WorkerCommand
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(300)
ROOT = str(Path(__file__).parents[2])
OK, BROKEN = 12, 4


@dataclass
class Stack:
    producer: Fleet
    worker: WorkerCommand
    port: int
    tmp: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("metrics")
    url = f"sqlite:///{folder / 'fleet.db'}"
    env = {"FLEET__BROKER_URL": url, "FLEET__STATE_URL": url, "FLEET__LOG_LEVEL": "WARNING"}
    # The producer counts too, and stamps its messages for the queue wait.
    producer = Fleet(broker_url=url, state_url=url, metrics=True)
    port = free_port()
    worker = WorkerCommand(
        "tests.integration.metrics_tasks:app", processes=2, threads=2, env=env, cwd=ROOT
    )
    worker.command += ["--metrics-port", str(port)]
    worker.env["FLEET__METRICS_HOST"] = "127.0.0.1"
    tmp = folder / "tmp"  # where the supervisor makes its multiprocess directory
    tmp.mkdir()
    worker.env["TMPDIR"] = str(tmp)
    with worker:
        worker.wait_consumers(producer, 2)
        yield Stack(producer, worker, port, tmp)
    producer.close()
    assert not list(tmp.glob("fleet-metrics-*")), "the multiprocess directory outlived the worker"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels without pid) -> value, summed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            key = (sample.name, labels)
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_what_the_worker_ran(stack: Stack) -> None:
    from tests.integration import metrics_tasks as tasks

    app = stack.producer
    square = app.task(name=tasks.square.name)(tasks.square.func)
    broken = app.task(name=tasks.broken.name, max_retries=1)(tasks.broken.func)
    good = [square(i) for i in range(OK)]
    bad = [broken(i) for i in range(BROKEN)]
    unknown = app.send("tests.integration.metrics_tasks.missing", 1)
    assert [h.result(timeout=120) for h in good] == [i * i for i in range(OK)]
    for handle in [*bad, unknown]:
        with pytest.raises(Exception):  # noqa: B017 - the task's own error, re-raised
            handle.result(timeout=120)
    assert all(h.status is Status.FAILED for h in [*bad, unknown])

    sq, br = {"task": tasks.square.name}, {"task": tasks.broken.name}
    expected = {
        ("fleet_invocations_started_total", "sq"): OK,
        ("fleet_invocations_succeeded_total", "sq"): OK,
        ("fleet_invocations_started_total", "br"): 2 * BROKEN,
        ("fleet_invocations_retried_total", "br"): BROKEN,
        ("fleet_invocations_failed_total", "br"): BROKEN,
        ("fleet_invocation_duration_seconds_count", "sq"): OK,
        ("fleet_invocation_duration_seconds_count", "br"): 2 * BROKEN,
        ("fleet_invocation_queue_wait_seconds_count", "sq"): OK,
        ("fleet_invocation_queue_wait_seconds_count", "br"): BROKEN,  # first attempts only
        ("fleet_invocations_dead_lettered_total", "other"): 1,
        ("fleet_invocations_failed_total", "other"): 1,
    }
    label = {"sq": sq, "br": br, "other": {"task": "other"}}
    found: dict[tuple[str, str], float] = {}

    def counted() -> bool:
        samples = scrape(stack.port)
        found.clear()
        found.update({key: value(samples, key[0], **label[key[1]]) for key in expected})
        return found == expected

    wait_until(counted, f"/metrics to count what ran: {found}", timeout=60)
    wait_until(  # a sampled gauge: written within half a second
        lambda: value(scrape(stack.port), "fleet_worker_invocations_in_hand") == 0, "in hand 0"
    )
    samples = scrape(stack.port)
    assert len(list(stack.tmp.glob("fleet-metrics-*/counter_*.db"))) >= 2  # per process
    assert value(samples, "fleet_invocations_succeeded_total", **br) == 0
    # A square runs in microseconds: its durations are all in the lowest buckets.
    assert value(samples, "fleet_invocation_duration_seconds_bucket", le="1.0", **sq) == OK
    names = {name for name, _ in samples}
    assert "fleet_worker_invocations_in_hand" in names
    for name, labels in samples:
        assert all(k in {"task", "le", "queue"} for k, _ in labels), (name, labels)


def test_the_producer_times_its_publishes_in_its_own_registry(stack: Stack) -> None:
    from prometheus_client import REGISTRY

    from fleet.monitor.metrics import Metrics

    (metrics,) = [e for e in stack.producer.dispatcher.extensions if isinstance(e, Metrics)]
    metrics.flush()

    before = (
        REGISTRY.get_sample_value("fleet_publish_duration_seconds_count", {"queue": "default"})
        or 0.0
    )
    from tests.integration import metrics_tasks as tasks

    square = stack.producer.task(name=tasks.square.name)(tasks.square.func)
    assert square(3).result(timeout=60) == 9
    metrics.flush()
    after = REGISTRY.get_sample_value("fleet_publish_duration_seconds_count", {"queue": "default"})
    assert after == before + 1


def test_counts_of_recycled_worker_processes_are_kept(tmp_path: Path) -> None:
    """One process recycled every 3 invocations: each writes what it counted before it
    exits, and the supervisor's /metrics still sums the processes that are gone."""
    from tests.integration import metrics_tasks as tasks

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = {
        "FLEET__BROKER_URL": url,
        "FLEET__STATE_URL": url,
        "FLEET__LOG_LEVEL": "WARNING",
        "FLEET__MAX_TASKS_PER_CHILD": "3",
        "FLEET__METRICS_HOST": "127.0.0.1",
    }
    producer = Fleet(broker_url=url, state_url=url)
    square = producer.task(name=tasks.square.name)(tasks.square.func)
    port = free_port()
    worker = WorkerCommand("tests.integration.metrics_tasks:app", threads=1, env=env, cwd=ROOT)
    worker.command += ["--metrics-port", str(port)]
    labels = {"task": tasks.square.name}
    try:
        with worker:
            worker.wait_consumers(producer, 1)
            for i in range(10):  # one at a time: each recycle happens between two calls
                assert square(i).result(timeout=60) == i * i
            wait_until(
                lambda: value(scrape(port), "fleet_invocations_succeeded_total", **labels) == 10,
                "10 successes counted across recycled processes",
                timeout=60,
            )
    finally:
        producer.close()


def test_the_supervisor_exports_the_backlog_of_a_queue_nobody_consumes(tmp_path: Path) -> None:
    """Six squares wait in `idle`, a queue of the queues file that the worker (two
    processes, consuming `default` only) never takes: /metrics reports
    fleet_queue_backlog{queue="idle"} 6, read once by the supervisor (not once per
    process), and 0 for `default`."""
    from fleet.backlog import backlog
    from tests.integration import metrics_tasks as tasks

    queues = tmp_path / "queues.yaml"
    queues.write_text("default: default\nqueues:\n  default: {}\n  idle: {}\n")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = {
        "FLEET__BROKER_URL": url,
        "FLEET__STATE_URL": url,
        "FLEET__QUEUES_FILE": str(queues),
        "FLEET__LOG_LEVEL": "WARNING",
        "FLEET__METRICS_HOST": "127.0.0.1",
    }
    producer = Fleet(broker_url=url, state_url=url, queues_file=str(queues))
    idle = producer.task(name=tasks.square.name, queue="idle")(tasks.square.func)
    handles = [idle(i) for i in range(6)]  # before the worker: its first read sees them
    assert backlog(producer) == {"default": 0, "idle": 6}
    port = free_port()
    worker = WorkerCommand(
        "tests.integration.metrics_tasks:app",
        processes=2,
        queues=("default",),
        env=env,
        cwd=ROOT,
    )
    worker.command += ["--metrics-port", str(port)]
    found: dict[str, float] = {}

    def exported() -> bool:
        try:
            samples = scrape(port)
        except OSError:  # the exporter is not listening yet
            return False
        found.clear()
        found.update(
            {q: value(samples, "fleet_queue_backlog", queue=q) for q in ("default", "idle")}
        )
        present = {labels for name, labels in samples if name == "fleet_queue_backlog"}
        return present == {(("queue", "default"),), (("queue", "idle"),)} and found == {
            "default": 0,
            "idle": 6,
        }

    try:
        with worker:
            wait_until(exported, f"fleet_queue_backlog idle=6: {found}", timeout=60)
            assert all(h.status is Status.PENDING for h in handles)  # nobody took them
    finally:
        producer.close()
