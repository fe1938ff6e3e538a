"""The metrics extension without a worker: what each status change counts, bounded
labels, the queue wait header (untrusted), and Prometheus naming conventions. Each test
has a registry of its own."""

from __future__ import annotations

import time
import uuid

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet import Fleet
from fleet.extensions import Applied, AppliedChange, Call, Publish
from fleet.monitor.metrics import PUBLISHED, Metrics
from fleet.status import Status
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(broker_url=URL, state_url=URL)


@app.task
def known() -> None:
    """A registered task: its name is a label value."""


def make() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    metrics.bind(app)
    return metrics, registry


def get(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def flushed(metrics: Metrics, registry: CollectorRegistry, name: str, **labels: str) -> float:
    """`get`, once what the hooks recorded is written (the flusher does it every 0.5 s)."""
    metrics.flush()
    return get(registry, name, **labels)


def change(task: str, source: Status | None, status: Status, note: str = "") -> AppliedChange:
    return AppliedChange(uuid.uuid4().hex, task, source, status, note=note)


def test_status_changes_count_per_task() -> None:
    metrics, registry = make()
    t = known.name
    metrics.after_change(
        Applied(
            (
                change(t, None, Status.RUNNING),  # a claim (several source statuses)
                change(t, Status.PAUSED, Status.RUNNING),  # a resume: not a start
                change(t, Status.RUNNING, Status.RETRY),
                change(t, Status.RUNNING, Status.SUCCESS),
                change(t, Status.RUNNING, Status.FAILED),
                change(t, None, Status.FAILED, "dead-lettered: unknown task"),
                change(t, Status.RUNNING, Status.PENDING, "owner died"),  # recovered
                change(t, Status.PAUSED, Status.PENDING, "owner died"),  # recovered
                change(t, Status.SCHEDULED, Status.PENDING),  # a release: not a recovery
                change(t, Status.PENDING, Status.CANCELLED),
            )
        )
    )
    expected = {
        "started": 1,
        "retried": 1,
        "succeeded": 1,
        "failed": 2,
        "dead_lettered": 1,
        "recovered": 2,
        "cancelled": 1,
    }
    for what, count in expected.items():
        assert flushed(metrics, registry, f"fleet_invocations_{what}_total", task=t) == count, what


def test_a_task_name_not_registered_is_labelled_other() -> None:
    metrics, registry = make()
    forged = [change(f"evil.{i}", None, Status.FAILED, "dead-lettered: x") for i in range(50)]
    metrics.after_change(Applied(tuple(forged)))
    metrics.flush()
    assert flushed(metrics, registry, "fleet_invocations_dead_lettered_total", task="other") == 50
    text = generate_latest(registry).decode()
    assert "evil." not in text


def call(headers: dict[str, str], attempt: int = 1) -> Call:
    return Call(uuid.uuid4().hex, known.name, attempt, (), {}, headers)


def test_queue_wait_and_duration_are_observed_and_bad_headers_ignored() -> None:
    metrics, registry = make()
    t = known.name
    assert metrics.around_call(call({PUBLISHED: f"{time.time() - 2:.6f}"}), lambda: 5) == 5
    for bad in ("soon", "nan", f"{time.time() + 3600}", "-1e300", "1e400"):
        metrics.around_call(call({PUBLISHED: bad}), lambda: None)
    metrics.around_call(call({PUBLISHED: f"{time.time()}"}, attempt=2), lambda: None)
    metrics.around_call(call({}), lambda: None)
    assert flushed(metrics, registry, "fleet_invocation_queue_wait_seconds_count", task=t) == 1
    assert 1.9 < flushed(metrics, registry, "fleet_invocation_queue_wait_seconds_sum", task=t) < 60
    assert flushed(metrics, registry, "fleet_invocation_duration_seconds_count", task=t) == 8
    with pytest.raises(ZeroDivisionError):
        metrics.around_call(call({}), lambda: 1 / 0)
    assert flushed(metrics, registry, "fleet_invocation_duration_seconds_count", task=t) == 9
    assert flushed(metrics, registry, "fleet_worker_invocations_in_hand") == 0


def test_in_hand_counts_calls_under_way() -> None:
    metrics, registry = make()
    seen: list[float] = []

    def inner() -> None:
        seen.append(flushed(metrics, registry, "fleet_worker_invocations_in_hand"))

    metrics.around_call(call({}), lambda: metrics.around_call(call({}), inner))
    assert seen == [2.0]
    assert flushed(metrics, registry, "fleet_worker_invocations_in_hand") == 0
    # The flusher thread catches up by itself too.
    metrics.around_call(
        call({}),
        lambda: wait_until(
            lambda: get(registry, "fleet_worker_invocations_in_hand") == 1, "the flusher", 10
        ),
    )
    wait_until(lambda: get(registry, "fleet_worker_invocations_in_hand") == 0, "the flusher", 10)


def test_publish_is_timed_per_queue_and_failures_counted() -> None:
    metrics, registry = make()
    publish = Publish(known.name, ("a", "b"), "default")
    metrics.around_publish(publish, lambda: None)
    assert float(publish.headers[PUBLISHED]) == pytest.approx(time.time(), abs=60)
    assert flushed(metrics, registry, "fleet_publish_duration_seconds_count", queue="default") == 1

    def refused() -> None:
        raise RuntimeError("not confirmed")

    with pytest.raises(RuntimeError):
        metrics.around_publish(Publish(known.name, ("c",), "default"), refused)
    assert flushed(metrics, registry, "fleet_publish_failures_total", queue="default") == 1
    assert flushed(metrics, registry, "fleet_publish_duration_seconds_count", queue="default") == 1


def test_names_follow_prometheus_conventions() -> None:
    metrics, registry = make()
    metrics.after_change(Applied((change(known.name, None, Status.RUNNING),)))
    metrics.around_call(call({}), lambda: None)
    metrics.around_publish(Publish(known.name, ("a",), "default"), lambda: None)
    metrics.flush()
    parsed = text_string_to_metric_families(generate_latest(registry).decode())
    families = [f for f in parsed if not f.name.endswith("_created")]  # creation times
    assert len(families) == 12
    for family in families:
        assert family.name.startswith("fleet_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            assert set(sample.labels) <= {"task", "queue", "le"}, sample


def test_worker_refuses_a_bad_metrics_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.cli import EXIT_CONFIG, main

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app_path = "tests.unit.test_metrics:app"
    assert main(["worker", "--app", app_path, "--metrics-port", "70000"]) == EXIT_CONFIG
    assert "--metrics-port 70000" in capsys.readouterr().err
    monkeypatch.setenv("FLEET__METRICS_PORT", "http")
    assert main(["worker", "--app", app_path]) == EXIT_CONFIG
    assert "metrics_port" in capsys.readouterr().err


def test_the_setting_adds_no_second_metrics_extension_to_an_app_that_has_one() -> None:
    own = Metrics(registry=CollectorRegistry())
    url = f"memory://{uuid.uuid4().hex}"
    with_own = Fleet(broker_url=url, state_url=url, metrics=True, extensions=[own])
    assert [e for e in with_own.dispatcher.extensions if isinstance(e, Metrics)] == [own]
    by_setting = Fleet(broker_url=url, state_url=url, metrics=True)
    assert len([e for e in by_setting.dispatcher.extensions if isinstance(e, Metrics)]) == 1
    off = Fleet(broker_url=url, state_url=url)
    assert not [e for e in off.dispatcher.extensions if isinstance(e, Metrics)]


def test_batched_histogram_writes_equal_observing_one_by_one() -> None:
    from prometheus_client import Histogram

    from fleet.monitor._metrics_families import DURATION_BUCKETS
    from fleet.monitor.metrics import write_histogram

    values = [0.0, 0.001, 0.0010001, 0.3, 5, 10, 299.9, 300, 301, 1e9, *DURATION_BUCKETS]
    one, batched = CollectorRegistry(), CollectorRegistry()
    for registry, write in ((one, None), (batched, write_histogram)):
        family = Histogram("h_seconds", "h", ("task",), buckets=DURATION_BUCKETS, registry=registry)
        child = family.labels("t")
        if write is None:
            for value in values:
                child.observe(value)
        else:
            write(child, values[:5])
            write(child, values[5:])

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        text = generate_latest(registry).decode()
        return {
            (s.name, s.labels.get("le", "")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if not s.name.endswith("_created")
        }

    expected, found = samples(one), samples(batched)
    assert found.keys() == expected.keys()
    for key, value in expected.items():  # the sum, added in another order, may round
        assert found[key] == pytest.approx(value, rel=1e-12), key


def test_a_histogram_of_another_layout_is_observed_value_by_value() -> None:
    from fleet.monitor.metrics import write_histogram

    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, value: float) -> None:
            self.seen.append(value)

    plain = Plain()
    write_histogram(plain, [1.0, 2.0])
    assert plain.seen == [1.0, 2.0]
