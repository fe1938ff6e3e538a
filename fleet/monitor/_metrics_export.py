"""Serving `/metrics` for a worker supervisor and its worker processes.

Job: `prepare_multiprocess()` makes the directory where prometheus_client's
multiprocess mode keeps each process's numbers and exports `PROMETHEUS_MULTIPROC_DIR`
(it must run before prometheus_client is first imported: the mode is chosen then),
`cleanup()` removes it; `Exporter` is the service (`start`/`stop`) that serves the
Prometheus text format over HTTP on a port.

Contract: with `PROMETHEUS_MULTIPROC_DIR` set, the exporter serves the sum over every
process that wrote there (counters of exited or recycled worker processes keep
counting); the per-process gauge of a process that is gone is dropped at the next
scrape (its files are marked dead, as prometheus_client documents for `live*`
gauges). Without it, the exporter serves its own process's registry. Either way it
also serves the `collectors` it was given (collected in this process at each scrape,
e.g. the backlog gauge of `fleet.monitor._metrics_backlog`), registered at `start` and
unregistered at `stop`. `start` raises `ConfigError` naming the port if it cannot
listen.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from fleet.errors import ConfigError

log = logging.getLogger(__name__)
ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess() -> str:
    """Create a fresh multiprocess directory and export it to this process's children."""
    path = tempfile.mkdtemp(prefix="fleet-metrics-")
    os.environ[ENV] = path
    return path


def cleanup(path: str) -> None:
    """Remove the directory `prepare_multiprocess` made."""
    if os.environ.get(ENV) == path:
        del os.environ[ENV]
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Sweeping:
    """A collector that first marks the files of gone processes dead, then collects."""

    def __init__(self, path: str, inner: Any) -> None:
        self.path = path
        self.inner = inner

    def collect(self) -> Any:
        from prometheus_client import multiprocess

        for name in glob.glob(os.path.join(self.path, "gauge_live*_*.db")):
            try:
                pid = int(name.rsplit("_", 1)[1].split(".", 1)[0])
            except ValueError:
                continue
            if not _alive(pid):
                multiprocess.mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        return self.inner.collect()


class Exporter:
    """`/metrics` over HTTP on `host:port` (a service: `start`, `stop`)."""

    def __init__(
        self,
        port: int,
        host: str = "0.0.0.0",
        registry: Any = None,
        collectors: Sequence[Any] = (),
    ) -> None:
        self.port = port
        self.host = host
        self.registry = registry
        self.collectors = tuple(collectors)
        self._serving: Any = None
        self._server: Any = None
        self._thread: Any = None

    def __repr__(self) -> str:
        return f"<metrics exporter {self.host}:{self.port}>"

    def _registry(self) -> Any:
        from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

        path = os.environ.get(ENV)
        if not path:
            registry = REGISTRY if self.registry is None else self.registry
        else:
            registry = CollectorRegistry(auto_describe=False)
            collector = multiprocess.MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]  # untyped upstream
            registry.register(_Sweeping(path, collector))
        for extra in self.collectors:
            registry.register(extra)
        return registry

    def start(self) -> None:
        from prometheus_client import start_http_server

        self._serving = self._registry()
        try:
            self._server, self._thread = start_http_server(
                self.port, self.host, registry=self._serving
            )
        except OSError as exc:
            self._unregister()
            raise ConfigError(
                f"metrics_port {self.port}: cannot serve /metrics on {self.host}: {exc}"
            ) from exc
        log.info("serving Prometheus metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._unregister()

    def _unregister(self) -> None:
        if self._serving is not None:
            for extra in self.collectors:
                self._serving.unregister(extra)
            self._serving = None
