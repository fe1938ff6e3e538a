"""The Prometheus metric families of fleet, created once per process.

Job: define every metric `fleet.monitor.metrics.Metrics` updates, with its name, help,
labels and buckets, in one place (the README table is written from it).

Contract: `families()` creates them on first use in the given registry (default: the
process's global one, which multiprocess mode shares through files) and returns the
same object afterwards, so two apps in one process share them instead of failing on a
duplicate registration. Names follow Prometheus conventions: the unit in the name
(`_seconds`), `_total` on counters, labels with bounded values only (`task`: a task
registered in the app, else `other`; `queue`: a queue of the queues file), never an
invocation id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


@dataclass(frozen=True)
class Families:
    started: Counter
    succeeded: Counter
    failed: Counter
    retried: Counter
    cancelled: Counter
    dead_lettered: Counter
    recovered: Counter
    duration: Histogram
    queue_wait: Histogram
    in_hand: Gauge
    publish: Histogram
    publish_failures: Counter


def _create(registry: CollectorRegistry) -> Families:
    def counter(name: str, doc: str, labels: tuple[str, ...] = ("task",)) -> Counter:
        return Counter(name, doc, labels, registry=registry)

    return Families(
        started=counter(
            "fleet_invocations_started_total", "Attempts claimed to run (resumes not counted)."
        ),
        succeeded=counter("fleet_invocations_succeeded_total", "Invocations ended SUCCESS."),
        failed=counter(
            "fleet_invocations_failed_total", "Invocations ended FAILED (dead letters included)."
        ),
        retried=counter(
            "fleet_invocations_retried_total", "Failed attempts that will be retried (RETRY)."
        ),
        cancelled=counter("fleet_invocations_cancelled_total", "Invocations CANCELLED."),
        dead_lettered=counter(
            "fleet_invocations_dead_lettered_total",
            "Invocations whose message a worker dead-lettered (unknown task, wrong codec).",
        ),
        recovered=counter(
            "fleet_invocations_recovered_total",
            "Invocations requeued because their owner died or stopped holding them.",
        ),
        duration=Histogram(
            "fleet_invocation_duration_seconds",
            "Run time of one attempt of the task function, in seconds.",
            ("task",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        queue_wait=Histogram(
            "fleet_invocation_queue_wait_seconds",
            "Seconds from the publish to the start of the first attempt.",
            ("task",),
            buckets=WAIT_BUCKETS,
            registry=registry,
        ),
        in_hand=Gauge(
            "fleet_worker_invocations_in_hand",
            "Invocations a worker process is running now (paused ones included).",
            registry=registry,
            multiprocess_mode="liveall",
        ),
        publish=Histogram(
            "fleet_publish_duration_seconds",
            "Seconds from the start of a batch's publish until the broker confirmed it "
            "(registering the records overlaps it).",
            ("queue",),
            buckets=PUBLISH_BUCKETS,
            registry=registry,
        ),
        publish_failures=counter(
            "fleet_publish_failures_total", "Batches whose publish failed.", ("queue",)
        ),
    )


_lock = threading.Lock()
_made: list[tuple[Any, Families]] = []
"""(registry, its families): a list, held strongly, since the id of a registry that
was collected may be reused by a new one."""


def families(registry: CollectorRegistry | None = None) -> Families:
    """The metric families registered in `registry` (default: the global one)."""
    target: Any = REGISTRY if registry is None else registry
    with _lock:
        for known, found in _made:
            if known is target:
                return found
        made = _create(target)
        _made.append((target, made))
        return made
