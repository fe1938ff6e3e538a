"""The `fleet_queue_backlog{queue}` gauge: each queue's real backlog, for autoscaling.

Job: `BacklogGauge` is a service (`start`/`stop`) and a Prometheus collector. Its
thread reads `fleet.backlog.backlog(app)` (ready in the broker and its urgent lane,
less stale copies, plus what is due in the state store) at start and then every
`interval` seconds, waiting on an event between reads (no polling; `stop` wakes it).
The exporter of `fleet worker --metrics-port` serves what it holds (see
`fleet.monitor.metrics.Metrics.services`): one process only, the supervisor, reads it,
so a scrape of any pod of a group reports the whole queue and the chart's KEDA query
takes `max by (queue)` over the pods.

Contract:
- The gauge is collected from this object (not a multiprocess gauge file), so each
  scrape shows exactly the queues of the last successful read: a queue that is no
  longer defined and has nothing due drops out at the next read. Label values are
  bounded: the queues of the app's queue definitions plus those the state store names.
- Before the first successful read there are no samples (never a 0 nobody measured).
- A read that fails (broker or state store unreachable) changes nothing: the values of
  the last successful read stay, so a scaler holds its size through an outage instead
  of scaling to zero. The failure is logged as a warning once per streak of failures,
  and the recovery once, at info.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily

from fleet.backlog import backlog

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger(__name__)
NAME = "fleet_queue_backlog"
HELP = (
    "Work waiting for a worker per queue: ready in the broker (urgent lane included, "
    "stale copies counted out) plus invocations due in the state store (see fleet.backlog)."
)
BACKLOG_INTERVAL = 15.0
"""Seconds between two reads of the backlog (one `Broker.stats` per queue and up to two
state-store queries each)."""


class BacklogGauge:
    """Reads the backlog every `interval` seconds and serves it as a gauge; see the
    module docstring."""

    def __init__(
        self,
        app: Fleet,
        interval: float = BACKLOG_INTERVAL,
        read: Callable[[Fleet], dict[str, int]] = backlog,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"backlog interval {interval!r}: must be positive")
        self.app = app
        self.interval = interval
        self._read = read
        self._values: dict[str, int] = {}
        self._failing = False
        self.reads = 0
        """Reads attempted so far, successful or not (tests wait on it)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<backlog gauge of {self.app.settings.name!r} every {self.interval:g}s>"

    @property
    def values(self) -> dict[str, int]:
        """`{queue: backlog}` of the last successful read (empty before the first)."""
        return dict(self._values)

    def refresh(self) -> None:
        """Read the backlog once; on failure, keep the last values and log (see above)."""
        name = self.app.settings.name
        try:
            found = self._read(self.app)
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "app %s: cannot read the queue backlog (keeping the last values of "
                    "%s until a read succeeds): %s",
                    name,
                    NAME,
                    exc,
                )
            return
        finally:
            self.reads += 1
        self._values = dict(found)  # replaced whole: queues gone since drop out
        if self._failing:
            self._failing = False
            log.info("app %s: the queue backlog can be read again", name)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(NAME, HELP, labels=("queue",))
        for queue, total in sorted(self._values.items()):
            family.add_metric((queue,), float(total))
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family without samples (registering must not read anything)."""
        yield GaugeMetricFamily(NAME, HELP, labels=("queue",))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleet-backlog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)  # a read stuck on a broker: a daemon thread
            self._thread = None

    def _run(self) -> None:
        while True:
            self.refresh()
            if self._stop.wait(self.interval):
                return


__all__ = ["BACKLOG_INTERVAL", "NAME", "BacklogGauge"]
