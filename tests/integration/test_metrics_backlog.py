"""The `fleet_queue_backlog{queue}` gauge on the embedded SQLite stack (a broker and a
state store in a tmp folder, no worker: nothing is taken). Its value per queue must be
`fleet.backlog.backlog(app)`, read from /metrics of the metrics extension's exporter or
from a registry, parsed with prometheus_client's parser; a queue gone drops out, and a
state store that cannot be read leaves the last values (never a 0)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet import Fleet
from fleet.backlog import backlog
from fleet.monitor._metrics_backlog import NAME, BacklogGauge
from fleet.monitor.metrics import Metrics
from fleet.state import Change
from fleet.status import Status
from fleet.testing._procs import free_port
from tests.failing_store import FailingStore
from tests.integration.test_metrics_worker import scrape, value
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
QUEUES = "default: default\nqueues:\n  default: {}\n  cpu: {}\n"
INTERVAL = 0.05


def _noop() -> None: ...


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Fleet]:
    (tmp_path / "queues.yaml").write_text(QUEUES)
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    made = Fleet(broker_url=url, state_url=url, queues_file=str(tmp_path / "queues.yaml"))
    yield made
    made.close()


def held(app: Fleet, queue: str, status: Status, due: float) -> str:
    """Register an invocation of `queue` held in the state store (no message); its id."""
    task = app.task(name=f"held_{status.name.lower()}_{queue}_{due:.0f}")(_noop)
    records, _ = app.prepare(task, [task.bind((), {})], due=due)
    record = dataclasses.replace(records[0], status=status, queue=queue)
    app.runtime().state.register([record])
    return record.id


def waiting_work(app: Fleet) -> None:
    """cpu: 3 ready + 1 RETRY due = 4; default: 2 ready + 1 SCHEDULED due = 3."""
    cpu = app.task(name="on_cpu", queue="cpu")(_noop)
    plain = app.task(name="on_default")(_noop)
    for _ in range(3):
        cpu()
    for _ in range(2):
        plain()
    now = time.time()
    held(app, "cpu", Status.RETRY, now - 5)  # backoff over: due
    held(app, "default", Status.SCHEDULED, now - 1)  # the leader would release it
    held(app, "cpu", Status.SCHEDULED, now + 3600)  # not due: no worker can take it


def gauge_of(registry: CollectorRegistry) -> dict[str, float]:
    """`{queue: value}` of fleet_queue_backlog in the registry's exposition text."""
    text = generate_latest(registry).decode()
    return {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == NAME
    }


@pytest.fixture
def gauge(app: Fleet) -> Iterator[tuple[BacklogGauge, CollectorRegistry]]:
    registry = CollectorRegistry()
    made = BacklogGauge(app, INTERVAL)
    registry.register(made)
    yield made, registry
    made.stop()


def test_the_exporter_serves_the_backlog_of_each_queue(app: Fleet) -> None:
    waiting_work(app)
    port = free_port()
    settings = dataclasses.replace(app.settings, metrics_port=port, metrics_host="127.0.0.1")
    metrics = Metrics(settings, registry=CollectorRegistry(), backlog_interval=INTERVAL)
    metrics.bind(app)
    services = list(metrics.services())
    for service in services:
        service.start()
    try:
        expected = backlog(app)
        assert expected == {"default": 3, "cpu": 4}
        found: dict[str, float] = {}

        def served() -> bool:
            samples = scrape(port)
            found.clear()
            found.update({q: value(samples, NAME, queue=q) for q in expected})
            return found == expected

        wait_until(served, f"/metrics to serve the backlog {expected}: {found}", timeout=30)
        app.task(name="on_cpu", queue="cpu")(_noop)()  # one more: the next read sees it
        wait_until(
            lambda: value(scrape(port), NAME, queue="cpu") == 5 == backlog(app)["cpu"],
            "the gauge to follow a new message",
            timeout=30,
        )
    finally:
        for service in reversed(services):
            service.stop()


def test_a_queue_gone_drops_out(app: Fleet, gauge: tuple[BacklogGauge, CollectorRegistry]) -> None:
    ghost = held(app, "ghost", Status.RETRY, time.time() - 1)  # a queue no longer defined
    reader, registry = gauge
    reader.start()
    wait_until(lambda: gauge_of(registry) == {"default": 0, "cpu": 0, "ghost": 1}, "ghost: 1")
    app.runtime().state.apply([Change(ghost, Status.CANCELLED, frozenset({Status.RETRY}))])
    wait_until(lambda: gauge_of(registry) == {"default": 0, "cpu": 0}, "ghost gone")
    assert gauge_of(registry) == backlog(app)


def test_a_store_that_cannot_be_read_leaves_the_last_values(
    app: Fleet, gauge: tuple[BacklogGauge, CollectorRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    waiting_work(app)
    runtime = app.runtime()
    failing = FailingStore(runtime.state)
    runtime.state = failing
    reader, registry = gauge
    reader.start()
    wait_until(lambda: gauge_of(registry) == {"default": 3, "cpu": 4}, "the first read")

    caplog.set_level(logging.INFO, logger="fleet.monitor._metrics_backlog")
    failing.fail_find = True
    reads = reader.reads
    wait_until(lambda: reader.reads >= reads + 5, "five failed reads")
    assert gauge_of(registry) == {"default": 3, "cpu": 4}  # the last values, no 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once per streak, not once per read
    assert "cannot read the queue backlog" in warnings[0].getMessage()

    failing.fail_find = False
    app.task(name="on_default")(_noop)()
    wait_until(lambda: gauge_of(registry) == {"default": 4, "cpu": 4}, "reads again")
    assert any("read again" in r.getMessage() for r in caplog.records)


def test_no_sample_before_a_first_successful_read(
    app: Fleet, gauge: tuple[BacklogGauge, CollectorRegistry]
) -> None:
    runtime = app.runtime()
    failing = FailingStore(runtime.state)
    failing.fail_find = True
    runtime.state = failing
    reader, registry = gauge
    reader.start()
    wait_until(lambda: reader.reads >= 3, "three failed reads")
    assert gauge_of(registry) == {}  # absent, not 0: nobody measured it
    text = generate_latest(registry).decode()
    assert f"# TYPE {NAME} gauge" in text
