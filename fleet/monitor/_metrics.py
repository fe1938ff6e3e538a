"""`/metrics` on the monitor: the store's and the broker's numbers in Prometheus text.

Job: expose what the monitor can see without any worker's help, as gauges: invocations
per status, queue depths (ready, unacked, consumers, dead), live runners.

Contract: `render(monitor)` returns text in the Prometheus exposition format 0.0.4
(`# HELP`, `# TYPE`, one sample per line, label values escaped); label sets are bounded
(status names, queue names, runner kinds: never an invocation id). `EXTRA` lets a
metrics extension append its own exposition text (e.g. a prometheus_client registry)
without touching the routes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from fleet.status import Status

if TYPE_CHECKING:
    from fleet.monitor._web import Monitor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EXTRA: list[Callable[[], str]] = []
"""Producers of more exposition text, appended after the monitor's own gauges."""


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {value:g}" if inner else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


def render(m: Monitor) -> str:
    runtime = m.fleet.runtime()
    counts = runtime.state.counts()
    out = [
        _family(
            "fleet_invocations",
            "Invocations in the state store, by status.",
            [({"status": s.value}, float(counts.get(s, 0))) for s in Status],
        )
    ]
    stats = [runtime.broker.stats(name) for name in m.fleet.queues.names()]
    for field, name, help_text in (
        ("ready", "fleet_queue_ready_messages", "Messages waiting in the queue."),
        ("unacked", "fleet_queue_unacked_messages", "Delivered, not yet acked (-1: unknown)."),
        ("consumers", "fleet_queue_consumers", "Consumers of the queue."),
        ("dead", "fleet_queue_dead_messages", "Messages in the queue's dead-letter queue."),
    ):
        samples = [({"queue": s.name}, float(getattr(s, field))) for s in stats]
        out.append(_family(name, help_text, samples))
    now, dead_after = time.time(), m.fleet.settings.dead_after
    live: dict[str, int] = {"supervisor": 0, "process": 0}
    for r in runtime.state.runners():
        if not r.stopped and now - r.beat < dead_after:
            live[r.kind] = live.get(r.kind, 0) + 1
    out.append(
        _family(
            "fleet_runners_live",
            "Runners whose heartbeat is fresh, by kind.",
            [({"kind": k}, float(n)) for k, n in sorted(live.items())],
        )
    )
    out.extend(extra() for extra in EXTRA)
    return "".join(out)


def endpoint(m: Monitor) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        text = await run_in_threadpool(render, m)
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    return metrics
