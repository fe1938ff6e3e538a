"""The systems a run measures: fleet configurations and the baselines.

Job: name every system `--configs` can select, say which workloads it runs and what it
needs (RabbitMQ, a MongoDB-wire server, a fleet backend that may not exist yet), and
build the environment of a fresh fleet configuration (its own database file and queue).

Contract: `SYSTEMS` is ordered as the report's columns. `fleet_env` returns the
`FLEET__*` variables for one (configuration, workload) run: a new SQLite file and a new
queue name each time, so no run sees another's rows or messages.
"""

from __future__ import annotations

import importlib.util
import secrets
from dataclasses import dataclass
from pathlib import Path

FLEET_WORKLOADS = ("W1", "W2", "W3", "W4", "idle", "rt")
ALL_WORKLOADS = (
    *FLEET_WORKLOADS,
    "triggers",
    "stale",
    "workflows",
    "metrics",
    "signing",
    "recovery",
    "duplicates",
)
"""`triggers` (bench.trigger_load), `workflows` (bench.workflow_load) and `metrics`
(bench.metrics_load) run on the embedded stack only; `stale` (bench.stale_copies) on
RabbitMQ only; `signing` (bench.signing_load) on the embedded stack and on RabbitMQ +
SQLite; `duplicates` is no system's workload: it selects `bench/duplicates.py` (an
extra of `bench.run`, run when RabbitMQ + SQLite is among the configurations)."""


@dataclass(frozen=True)
class System:
    name: str
    label: str
    kind: str
    """'fleet', 'pika', 'dramatiq' or 'celery'."""
    workloads: tuple[str, ...]
    broker: str = ""
    """fleet only: 'sqlite' or 'rabbitmq'."""
    state: str = ""
    """fleet only: 'sqlite' or 'mongo'."""
    queue_type: str = "quorum"
    """fleet on RabbitMQ: the type of its queue (fleet's default is quorum)."""
    settings: tuple[tuple[str, str], ...] = ()
    """fleet only: extra `FLEET__<KEY>` settings of this configuration."""
    variant: str = ""
    """Baselines: 'confirms' (Dramatiq with publisher confirms), 'reliable' (Celery with
    acks_late + reject_on_worker_lost); '' for their defaults."""

    @property
    def needs_rabbitmq(self) -> bool:
        return self.kind != "fleet" or self.broker == "rabbitmq"

    @property
    def needs_mongo(self) -> bool:
        return self.state == "mongo"

    def missing_backend(self) -> str | None:
        """Why this fleet configuration cannot run in this checkout, or None."""
        modules = {"rabbitmq": "fleet.broker.rabbitmq", "mongo": "fleet.state.mongo"}
        for part in (self.broker, self.state):
            module = modules.get(part)
            if module and importlib.util.find_spec(module) is None:
                return f"{module} is not in this checkout yet"
        return None


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            "embedded",
            "fleet embedded (SQLite)",
            "fleet",
            (*FLEET_WORKLOADS, "triggers", "workflows", "metrics", "signing"),
            "sqlite",
            "sqlite",
        ),
        System(
            "rabbitmq-sqlite",
            "fleet RabbitMQ + SQLite",
            "fleet",
            (*FLEET_WORKLOADS, "stale", "signing"),
            "rabbitmq",
            "sqlite",
        ),
        # Timings against the SecantusDB stand-in mean nothing: MongoDB commands per
        # invocation only, counted by bench/mongo_roundtrips.py (see EXTRAS).
        # Dramatiq declares classic queues: the same comparison on a classic queue.
        System(
            "rabbitmq-classic",
            "fleet RabbitMQ (classic queue) + SQLite",
            "fleet",
            ("W1", "W2"),
            "rabbitmq",
            "sqlite",
            "classic",
        ),
        # The call waits for RabbitMQ's confirm (the behaviour before publish_confirm).
        System(
            "rabbitmq-wait",
            "fleet RabbitMQ + SQLite, confirm awaited by the call",
            "fleet",
            ("W1", "W2"),
            "rabbitmq",
            "sqlite",
            settings=(("PUBLISH_CONFIRM", "wait"),),
        ),
        System("rabbitmq-mongo", "fleet RabbitMQ + MongoDB", "fleet", (), "rabbitmq", "mongo"),
        System("pika", "raw pika", "pika", ("W1", "W2")),
        System(
            "dramatiq",
            "Dramatiq (confirms)",
            "dramatiq",
            ("W1", "W2", "W3", "idle"),
            variant="confirms",
        ),
        System("dramatiq-defaults", "Dramatiq defaults", "dramatiq", ("W1", "W2")),
        System("celery", "Celery defaults", "celery", ("W1", "W2")),
        System(
            "celery-reliable",
            "Celery acks_late + reject_on_worker_lost",
            "celery",
            ("W1", "W2"),
            variant="reliable",
        ),
    )
}


def fresh_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def fleet_env(
    system: System, run_dir: Path, workload: str, rabbitmq_url: str = "", mongo_url: str = ""
) -> dict[str, str]:
    """`FLEET__*` settings for one run of `workload` on `system` (fresh file and queue)."""
    queue = fresh_name(f"bench-{workload.lower()}")
    db = f"sqlite:///{run_dir / (queue + '.db')}"
    queues_file = run_dir / f"{queue}.yaml"
    queues_file.write_text(
        f"default: {queue}\nqueues:\n  {queue}:\n"
        f"    type: {system.queue_type}\n    delivery_limit: 20\n"
    )
    env = {
        "FLEET__NAME": queue,
        "FLEET__BROKER_URL": rabbitmq_url if system.broker == "rabbitmq" else db,
        "FLEET__STATE_URL": mongo_url if system.state == "mongo" else db,
        "FLEET__QUEUES_FILE": str(queues_file),
        "FLEET__DEFAULT_QUEUE": queue,
        "FLEET__LOG_LEVEL": "WARNING",
    }
    env.update((f"FLEET__{key}", value) for key, value in system.settings)
    return env
