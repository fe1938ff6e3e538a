"""Trace context and the publish time travel through RabbitMQ too: a real node, SQLite
state, a worker on a thread; the run span's parent is the publish span, and the worker
observes the queue wait from the producer's `fleet-published` header."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("prometheus_client")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from fleet import Fleet
from fleet.monitor.metrics import Metrics
from fleet.monitor.tracing import Tracing
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import running_worker
from tests.integration import rabbitmq_tasks

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]


def test_headers_link_spans_and_time_the_wait_over_rabbitmq(
    rabbitmq: RabbitMQServer, tmp_path: Path
) -> None:
    queue = f"observed-{tmp_path.name}"[:60]
    (tmp_path / "queues.yaml").write_text(f"default: {queue}\nqueues:\n  {queue}: {{}}\n")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    app = Fleet(
        broker_url=rabbitmq.url,
        state_url=f"sqlite:///{tmp_path}/fleet.db",
        queues_file=str(tmp_path / "queues.yaml"),
        extensions=[Tracing(tracer_provider=provider), metrics],
    )
    quick = app.task(rabbitmq_tasks.quick)
    try:
        with running_worker(app, threads=2):
            assert quick(1).result(timeout=60) == 2
    finally:
        app.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    publish, run = spans[f"publish {quick.name}"], spans[f"run {quick.name}"]
    assert publish.context is not None and run.parent is not None
    assert run.parent.span_id == publish.context.span_id
    assert run.context is not None and run.context.trace_id == publish.context.trace_id
    metrics.flush()  # what the hooks recorded is written every half second
    labels = {"task": quick.name}
    assert registry.get_sample_value("fleet_invocation_queue_wait_seconds_count", labels) == 1
    assert registry.get_sample_value("fleet_invocations_succeeded_total", labels) == 1
    published = registry.get_sample_value("fleet_publish_duration_seconds_count", {"queue": queue})
    assert published == 1
