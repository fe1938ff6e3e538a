"""Prometheus metrics for a fleet: an extension counting and timing invocations.

Job: `Metrics`, an `Extension` (turned on by the setting `metrics`, or passed as
`Fleet(extensions=[Metrics()])`), keeps the families of `fleet.monitor._metrics_families`:
- `after_change`: started (claimed to run; a resume from PAUSED is not a start),
  succeeded, failed, retried, cancelled, dead-lettered and recovered invocations per
  task, counted in the process where the change took effect (worker processes, the
  supervisor's recoveries, producers);
- `around_call`: run time of each attempt per task, the invocations in hand per worker
  process (a gauge sampled every `SAMPLE_EVERY` seconds), and the queue wait (from the
  publish, whose time `around_publish` put in the header `fleet-published`, to the
  start; a message republished by the leader or a retry carries no such header and is
  not observed);
- `around_publish`: seconds until the broker confirmed a batch, per queue, and the
  batches that failed;
- `services()`: the `/metrics` exporter on the setting `metrics_port`, in the process
  that is not a spawned worker process (the supervisor of `fleet worker`, which reads
  its worker processes' numbers from the multiprocess directory, see
  `fleet.monitor._metrics_export`).

Contract: label values are bounded (task names registered in the app, else `other`;
queue names); a malformed `fleet-published` header (input from a queue) is ignored.
Importing this module without `prometheus_client` raises `ConfigError` naming the
extra `[metrics]`.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fleet.errors import ConfigError
from fleet.extensions import Applied, Call, Extension, Publish
from fleet.status import Status

try:
    from prometheus_client import CollectorRegistry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError(
        "fleet metrics need prometheus_client: pip install 'fleet-tasks[metrics]'"
    ) from exc

from fleet.monitor._metrics_families import Families, families

if TYPE_CHECKING:
    from fleet.config import Settings

PUBLISHED = "fleet-published"
"""Message header: when the producer began publishing it (epoch seconds, text)."""
OTHER = "other"
SAMPLE_EVERY = 0.5
"""Seconds between writes of the in-hand gauge (only when it changed)."""
MAX_WAIT = 366 * 86400.0
"""A queue wait beyond this (a clock far off, a forged header) is not observed."""


class Metrics(Extension):
    """Prometheus metrics of the invocations this process sees; see the module docstring."""

    def __init__(
        self, settings: Settings | None = None, *, registry: CollectorRegistry | None = None
    ) -> None:
        self.port = settings.metrics_port if settings is not None else 0
        self.host = settings.metrics_host if settings is not None else "0.0.0.0"
        self.families: Families = families(registry)
        self.registry = registry
        self._app: Any = None
        self._children: dict[tuple[str, str], Any] = {}
        self._in_hand = 0
        self._in_hand_lock = threading.Lock()
        self._sampler: threading.Thread | None = None

    def bind(self, app: Any) -> None:
        self._app = app

    def _task(self, name: str) -> str:
        app = self._app
        if app is not None and name in app.tasks:
            return name
        return OTHER

    def _child(self, family: str, label: str) -> Any:
        """The labelled child of a family, cached (the label lookup is the costly part)."""
        key = (family, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = getattr(self.families, family).labels(label)
        return child

    def after_change(self, applied: Applied) -> None:
        for change in applied.changes:
            status = change.status
            if status is Status.RUNNING:
                if change.source is not Status.PAUSED:
                    self._child("started", self._task(change.task)).inc()
            elif status is Status.SUCCESS:
                self._child("succeeded", self._task(change.task)).inc()
            elif status is Status.FAILED:
                task = self._task(change.task)
                self._child("failed", task).inc()
                if change.note.startswith("dead-lettered"):
                    self._child("dead_lettered", task).inc()
            elif status is Status.RETRY:
                self._child("retried", self._task(change.task)).inc()
            elif status is Status.CANCELLED:
                self._child("cancelled", self._task(change.task)).inc()
            elif status is Status.PENDING and change.source in (Status.RUNNING, Status.PAUSED):
                self._child("recovered", self._task(change.task)).inc()

    def around_call(self, call: Call, proceed: Callable[[], Any]) -> Any:
        task = self._task(call.task)
        began = time.time()
        published = call.headers.get(PUBLISHED)
        if published is not None and call.attempt == 1:
            try:
                wait = began - float(published)
            except ValueError:
                wait = -1.0
            if 0.0 <= wait < MAX_WAIT:
                self._child("queue_wait", task).observe(wait)
        if self._sampler is None:
            self._start_sampler()
        with self._in_hand_lock:
            self._in_hand += 1
        clock = time.perf_counter()
        try:
            return proceed()
        finally:
            self._child("duration", task).observe(time.perf_counter() - clock)
            with self._in_hand_lock:
                self._in_hand -= 1

    def sample(self) -> None:
        """Write the invocations in hand now to the gauge (the sampler does it every
        `SAMPLE_EVERY` seconds: a gauge write costs a system call in multiprocess mode,
        too much to pay twice per invocation)."""
        self.families.in_hand.set(self._in_hand)

    def _start_sampler(self) -> None:
        with self._in_hand_lock:
            if self._sampler is not None:
                return
            self._sampler = threading.Thread(
                target=self._sample_forever, name="fleet-metrics-sampler", daemon=True
            )
        self._sampler.start()

    def _sample_forever(self) -> None:
        last = -1
        while True:
            now = self._in_hand
            if now != last:
                self.sample()
                last = now
            time.sleep(SAMPLE_EVERY)

    def around_publish(self, publish: Publish, proceed: Callable[[], None]) -> None:
        publish.headers[PUBLISHED] = f"{time.time():.6f}"
        clock = time.perf_counter()
        try:
            proceed()
        except BaseException:
            self._child("publish_failures", publish.queue).inc()
            raise
        self._child("publish", publish.queue).observe(time.perf_counter() - clock)

    def services(self) -> Sequence[Any]:
        if not self.port or multiprocessing.parent_process() is not None:
            return ()  # a spawned worker process: its supervisor serves its numbers
        from fleet.monitor._metrics_export import Exporter

        return (Exporter(self.port, self.host, self.registry),)


__all__ = ["PUBLISHED", "Metrics"]
