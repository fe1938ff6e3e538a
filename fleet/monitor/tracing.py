"""OpenTelemetry tracing for a fleet: a span for each publish and each run, linked.

Job: `Tracing`, an `Extension` (turned on by the setting `tracing`, or passed as
`Fleet(extensions=[Tracing(tracer_provider=...)])`):
- `around_publish`: a PRODUCER span `publish <task>` around registering and publishing
  a batch until the broker confirmed it, child of the caller's current span; its
  context is injected into the messages' headers (W3C `traceparent`, and `tracestate`
  / `baggage` when there are, through the configured propagator);
- `around_call`: a CONSUMER span `run <task>` around the task function, whose parent
  is the context extracted from the message's headers. A task that calls other tasks
  publishes them inside its run span, so one trace shows a request, its tasks and their
  children. An exception raised by the task is recorded on the span (status ERROR).

Contract: spans carry `messaging.system=fleet`, `messaging.destination.name` (queue,
publish only), `messaging.operation.type`, `messaging.batch.message_count` (publish),
`fleet.task`, `fleet.invocation_id` (run; publish of one call) and `fleet.attempt`
(run). Headers come from a queue and are untrusted: a malformed `traceparent` is
ignored by the propagator and the run span starts a new trace. The tracer provider is
the global one unless one is given; configuring an SDK and exporters is the
application's business. Importing this module without `opentelemetry-api` raises
`ConfigError` naming the extra `[otel]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleet.errors import ConfigError
from fleet.extensions import Call, Extension, Publish

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError("fleet tracing needs OpenTelemetry: pip install 'fleet-tasks[otel]'") from exc

if TYPE_CHECKING:
    from fleet.config import Settings

SYSTEM = "fleet"


class Tracing(Extension):
    """OpenTelemetry spans for publishes and runs; see the module docstring."""

    def __init__(self, settings: Settings | None = None, *, tracer_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("fleet", tracer_provider=tracer_provider)

    def around_publish(self, publish: Publish, proceed: Callable[[], None]) -> None:
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "publish",
            "messaging.destination.name": publish.queue,
            "messaging.batch.message_count": len(publish.ids),
            "fleet.task": publish.task,
        }
        if len(publish.ids) == 1:
            attributes["fleet.invocation_id"] = publish.ids[0]
        with self.tracer.start_as_current_span(
            f"publish {publish.task}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            propagate.inject(publish.headers)
            proceed()

    def around_call(self, call: Call, proceed: Callable[[], Any]) -> Any:
        parent = propagate.extract(dict(call.headers)) if call.headers else None
        with self.tracer.start_as_current_span(
            f"run {call.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "fleet.task": call.task,
                "fleet.invocation_id": call.invocation_id,
                "fleet.attempt": call.attempt,
            },
        ):
            return proceed()


__all__ = ["Tracing"]
