"""Prometheus metrics for a fleet: an extension counting and timing invocations.

Job: `Metrics`, an `Extension` (turned on by the setting `metrics`, or passed as
`Fleet(extensions=[Metrics()])`), keeps the families of `fleet.monitor._metrics_families`:
- `after_change`: started (claimed to run; a resume from PAUSED is not a start),
  succeeded, failed, retried, cancelled, dead-lettered and recovered invocations per
  task, counted in the process where the change took effect (worker processes, the
  supervisor's recoveries, producers);
- `around_call`: run time of each attempt per task, the invocations in hand per worker
  process, and the queue wait (from the publish, whose time `around_publish` put in
  the header `fleet-published`, to the start; a message republished by the leader or
  a retry carries no such header and is not observed);
- `around_publish`: seconds until the broker confirmed a batch, per queue, and the
  batches that failed;
- `services()`: the `/metrics` exporter on the setting `metrics_port`, in the process
  that is not a spawned worker process (the supervisor of `fleet worker`, which reads
  its worker processes' numbers from the multiprocess directory, see
  `fleet.monitor._metrics_export`), and beside it the `fleet_queue_backlog{queue}`
  gauge, each queue's backlog read every `backlog_interval` seconds by that process
  alone (see `fleet.monitor._metrics_backlog`).

Contract: the hooks only append to a queue; a flusher thread writes it to the metrics
every `FLUSH_EVERY` seconds, and at exit (a metric write takes a lock and, in
multiprocess mode, writes a shared file: on the task threads, contended by them, it
cost more than the rest of the hook). A scrape thus reads numbers at most that old; a
process killed outright loses its last unflushed half second. Label values are
bounded (task names registered in the app, else `other`; queue names); a malformed
`fleet-published` header (input from a queue) is ignored. Importing this module
without `prometheus_client` raises `ConfigError` naming the extra `[metrics]`.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import threading
import time
from bisect import bisect_left
from collections import deque
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

from fleet.monitor._metrics_backlog import BACKLOG_INTERVAL, BacklogGauge
from fleet.monitor._metrics_families import Families, families

if TYPE_CHECKING:
    from fleet.config import Settings

log = logging.getLogger(__name__)
PUBLISHED = "fleet-published"
"""Message header: when the producer began publishing it (epoch seconds, text)."""
OTHER = "other"
FLUSH_EVERY = 0.5
"""Seconds between writes of what the hooks recorded to the metrics (see `flush`)."""
IN_HAND = "in_hand"
HISTOGRAMS = frozenset({"duration", "queue_wait", "publish"})
MAX_WAIT = 366 * 86400.0
"""A queue wait beyond this (a clock far off, a forged header) is not observed."""


class Metrics(Extension):
    """Prometheus metrics of the invocations this process sees; see the module docstring."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: CollectorRegistry | None = None,
        backlog_interval: float = BACKLOG_INTERVAL,
    ) -> None:
        self.port = settings.metrics_port if settings is not None else 0
        self.backlog_interval = backlog_interval
        self.host = settings.metrics_host if settings is not None else "0.0.0.0"
        self.families: Families = families(registry)
        self.registry = registry
        self._app: Any = None
        self._children: dict[tuple[str, str], Any] = {}
        self._events: deque[tuple[str, str, float]] = deque()
        """(family, label, amount or observed value), appended by any thread (a deque's
        append is atomic), written to the metrics by `flush`."""
        self._in_hand = 0
        self._in_hand_written = False
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

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

    def _add(self, family: str, label: str, value: float = 1.0) -> None:
        if self._flusher is None:
            self._start_flusher()
        self._events.append((family, label, value))

    def after_change(self, applied: Applied) -> None:
        add = self._add
        for change in applied.changes:
            status = change.status
            if status is Status.RUNNING:
                if change.source is not Status.PAUSED:
                    add("started", self._task(change.task))
            elif status is Status.SUCCESS:
                add("succeeded", self._task(change.task))
            elif status is Status.FAILED:
                task = self._task(change.task)
                add("failed", task)
                if change.note.startswith("dead-lettered"):
                    add("dead_lettered", task)
            elif status is Status.RETRY:
                add("retried", self._task(change.task))
            elif status is Status.CANCELLED:
                add("cancelled", self._task(change.task))
            elif status is Status.PENDING and change.source in (Status.RUNNING, Status.PAUSED):
                add("recovered", self._task(change.task))

    def around_call(self, call: Call, proceed: Callable[[], Any]) -> Any:
        task = self._task(call.task)
        published = call.headers.get(PUBLISHED)
        if published is not None and call.attempt == 1:
            try:
                wait = time.time() - float(published)
            except ValueError:
                wait = -1.0
            if 0.0 <= wait < MAX_WAIT:
                self._add("queue_wait", task, wait)
        self._add(IN_HAND, "", 1.0)
        clock = time.perf_counter()
        try:
            return proceed()
        finally:
            self._add("duration", task, time.perf_counter() - clock)
            self._add(IN_HAND, "", -1.0)

    def around_publish(self, publish: Publish, proceed: Callable[[], None]) -> None:
        publish.headers[PUBLISHED] = f"{time.time():.6f}"
        clock = time.perf_counter()
        try:
            proceed()
        except BaseException:
            self._add("publish_failures", publish.queue)
            raise
        self._add("publish", publish.queue, time.perf_counter() - clock)

    def flush(self) -> None:
        """Write what the hooks recorded since the last flush to the metrics: counters
        summed (one write per task), histogram observations grouped (their sum and each
        bucket touched written once, see `write_histogram`), the in-hand gauge if it
        changed. The flusher thread calls it every `FLUSH_EVERY` seconds,
        and at exit."""
        with self._flush_lock:
            counts: dict[tuple[str, str], float] = {}
            observed: dict[tuple[str, str], list[float]] = {}
            in_hand = self._in_hand
            popleft = self._events.popleft
            while True:
                try:
                    family, label, value = popleft()
                except IndexError:
                    break
                if family in HISTOGRAMS:
                    observed.setdefault((family, label), []).append(value)
                elif family == IN_HAND:
                    in_hand += int(value)
                else:
                    counts[(family, label)] = counts.get((family, label), 0.0) + value
            for (family, label), amount in counts.items():
                self._child(family, label).inc(amount)
            for (family, label), values in observed.items():
                write_histogram(self._child(family, label), values)
            if in_hand != self._in_hand or not self._in_hand_written:
                self._in_hand, self._in_hand_written = in_hand, True
                self.families.in_hand.set(in_hand)

    def _start_flusher(self) -> None:
        with self._flush_lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._flush_forever, name="fleet-metrics", daemon=True
            )
            atexit.register(self.flush)
        self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY)
            try:
                self.flush()
            except Exception:
                log.exception("could not write fleet metrics")

    def services(self) -> Sequence[Any]:
        if not self.port or multiprocessing.parent_process() is not None:
            return ()  # a spawned worker process: its supervisor serves its numbers
        from fleet.monitor._metrics_export import Exporter

        # The backlog is read by the serving process alone (one reader per pod, not one
        # per worker process), started first so the first scrape finds it read.
        gauges = () if self._app is None else (BacklogGauge(self._app, self.backlog_interval),)
        return (*gauges, Exporter(self.port, self.host, self.registry, collectors=gauges))


def write_histogram(child: Any, values: list[float]) -> None:
    """Observe `values` in a histogram child, writing its sum and each bucket touched
    once (each write takes a lock and, in multiprocess mode, updates a shared file).
    This relies on prometheus_client's layout of a histogram child (`_upper_bounds`,
    and non-cumulative `_buckets` and `_sum` values, stable since 0.4); a child without
    it gets `observe` once per value."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if not bounds or total is None or buckets is None or len(buckets) != len(bounds):
        for value in values:
            child.observe(value)
        return
    hits = [0] * len(bounds)
    for value in values:
        hits[bisect_left(bounds, value)] += 1  # the first bound >= value: `le`
    total.inc(sum(values))
    for index, count in enumerate(hits):
        if count:
            buckets[index].inc(count)


__all__ = ["PUBLISHED", "Metrics", "write_histogram"]
