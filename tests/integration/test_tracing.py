"""OpenTelemetry tracing over the embedded SQLite stack (real SQLite broker and store,
a worker on a thread): publish and run spans, linked through the W3C `traceparent`
message header, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fleet import Fleet
from fleet.extensions import Call
from fleet.monitor.tracing import Tracing
from fleet.testing.worker import running_worker

FOLDER = tempfile.mkdtemp(prefix="fleet-tracing-")
URL = f"sqlite:///{FOLDER}/fleet.db"
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracing = Tracing(tracer_provider=provider)
app = Fleet(broker_url=URL, state_url=URL, extensions=[tracing])


@app.task
def leaf(x: int) -> int:
    return x + 1


@app.task
def parent(x: int) -> int:
    return leaf(x).result() * 10


@app.task
def explode() -> None:
    raise KeyError("no such thing")


@pytest.fixture(scope="module")
def worker() -> Iterator[None]:
    with running_worker(app, threads=4):
        yield
    app.close()
    shutil.rmtree(FOLDER, ignore_errors=True)


def spans_named(name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_a_trace_shows_the_request_its_task_and_the_child(worker: None) -> None:
    exporter.clear()
    with provider.get_tracer("test").start_as_current_span("request") as request:
        assert parent(4).result(timeout=60) == 50
    trace_id = request.get_span_context().trace_id
    (pub_parent,) = spans_named(f"publish {parent.name}")
    (run_parent,) = spans_named(f"run {parent.name}")
    (pub_leaf,) = spans_named(f"publish {leaf.name}")
    (run_leaf,) = spans_named(f"run {leaf.name}")
    chain = [pub_parent, run_parent, pub_leaf, run_leaf]
    assert all(s.context is not None and s.context.trace_id == trace_id for s in chain)
    # request -> publish parent -> run parent -> publish leaf -> run leaf
    above = [request.get_span_context(), *(s.context for s in chain[:-1])]
    for span, up in zip(chain, above, strict=True):
        assert span.parent is not None and up is not None
        assert span.parent.span_id == up.span_id, span.name
    assert [s.kind for s in chain] == [SpanKind.PRODUCER, SpanKind.CONSUMER] * 2
    attributes = run_leaf.attributes or {}
    assert attributes["fleet.task"] == leaf.name
    assert attributes["fleet.attempt"] == 1
    assert (pub_leaf.attributes or {})["messaging.destination.name"] == "default"
    assert (pub_leaf.attributes or {})["fleet.invocation_id"] == attributes["fleet.invocation_id"]


def test_a_failing_run_records_the_exception(worker: None) -> None:
    exporter.clear()
    handle = explode()
    with pytest.raises(Exception, match="no such thing"):
        handle.result(timeout=60)
    (run,) = spans_named(f"run {explode.name}")
    assert run.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in run.events)


def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    exporter.clear()
    call = Call("inv-1", "pkg.task", 1, (), {}, {"traceparent": "00-zz-not-a-trace-01"})
    assert tracing.around_call(call, lambda: 7) == 7
    (run,) = spans_named("run pkg.task")
    assert run.parent is None
