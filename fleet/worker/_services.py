"""Per-process services of the extensions (a metrics exporter, say): start and stop.

Job: start what `Dispatcher.services()` returns when a supervisor or a worker process
starts, and stop it when that process stops.

Contract: with no extension overriding `services`, `start` costs one empty-tuple check
and returns []. Services start in order; if one fails to start, those already started
are stopped and the error propagates (the operator asked for it: a metrics port taken
must not be ignored). `stop` stops them in reverse order and only logs a failure, so
the rest of the shutdown goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from fleet.extensions import Dispatcher

log = logging.getLogger(__name__)


def start(dispatcher: Dispatcher) -> list[Any]:
    """Start every extension service of this process; returns them for `stop`."""
    if not dispatcher.services_hooks:
        return []
    started: list[Any] = []
    try:
        for service in dispatcher.services():
            service.start()
            started.append(service)
    except BaseException:
        stop(started)
        raise
    return started


def stop(services: list[Any]) -> None:
    """Stop `services` (from `start`), last started first; failures are logged."""
    for service in reversed(services):
        try:
            service.stop()
        except Exception:
            log.exception("extension service %r failed to stop", service)
