"""Queue definitions (from YAML) and task routing.

Job: describe every queue fleet declares on a broker, and decide which queue a task's
invocations go to.

Contract: `load_queues(path)` reads a YAML file shaped like `configs/queues.yaml` and
returns a `QueueTable`; any unknown key, wrong type or impossible combination raises
`ConfigError` naming the file, the queue and the key. Routing, in order: the task's
`queue=` option, the first queue whose `tasks` patterns (shell-style, on the dotted task
name) match, then the default queue. Every queue gets a dead-letter exchange
`<name>.dlx` and dead-letter queue `<name>.dead` unless `dead_letter: false`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from fleet.errors import ConfigError

QUEUE_TYPES = ("quorum", "classic")
OVERFLOWS = ("drop-head", "reject-publish", "reject-publish-dlx")


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue, as configured."""

    name: str
    type: str = "quorum"
    """'quorum' (replicated, the default) or 'classic' (needed for priorities)."""
    delivery_limit: int | None = 20
    """Deliveries after which a message is dead-lettered (poison protection)."""
    dead_letter: bool = True
    message_ttl: float | None = None
    """Seconds a message may wait in the queue before it is dead-lettered."""
    max_length: int | None = None
    overflow: str = "reject-publish"
    """What a full queue does: 'drop-head', 'reject-publish' or 'reject-publish-dlx'."""
    prefetch: int = 0
    """Messages a worker process may hold undelivered; 0 means twice its slots."""
    max_priority: int | None = None
    """Classic queues only: enables message priorities 0..max_priority."""
    tasks: tuple[str, ...] = ()
    """Task-name patterns routed here."""

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.name}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"

    def __post_init__(self) -> None:
        where = f"queue {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a queue needs a non-empty name, got {self.name!r}")
        if self.name.endswith((".dead", ".dlx")):
            raise ConfigError(f"{where}: the suffixes .dead and .dlx are reserved")
        if self.type not in QUEUE_TYPES:
            raise ConfigError(f"{where}: type must be one of {QUEUE_TYPES}, got {self.type!r}")
        if self.overflow not in OVERFLOWS:
            raise ConfigError(
                f"{where}: overflow must be one of {OVERFLOWS}, got {self.overflow!r}"
            )
        if self.max_priority is not None and self.type != "classic":
            raise ConfigError(f"{where}: max_priority needs type: classic")
        for key in ("delivery_limit", "max_length", "max_priority"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise ConfigError(f"{where}: prefetch must be an integer >= 0, got {self.prefetch!r}")
        if self.message_ttl is not None and (
            not isinstance(self.message_ttl, (int, float)) or self.message_ttl <= 0
        ):
            raise ConfigError(f"{where}: message_ttl must be seconds > 0, got {self.message_ttl!r}")


@dataclass(frozen=True, slots=True)
class QueueTable:
    """All configured queues and the routing between tasks and queues."""

    queues: tuple[QueueSpec, ...]
    default: str = "default"

    def get(self, name: str) -> QueueSpec:
        """The spec of queue `name`; queues not configured get the defaults."""
        for spec in self.queues:
            if spec.name == name:
                return spec
        return QueueSpec(name=name)

    def route(self, task_name: str, option: str | None = None) -> str:
        """The queue for `task_name`, honouring the task's own `queue=` option first."""
        if option:
            return option
        for spec in self.queues:
            if any(fnmatch.fnmatchcase(task_name, pattern) for pattern in spec.tasks):
                return spec.name
        return self.default

    def names(self) -> list[str]:
        names = [spec.name for spec in self.queues]
        return names if self.default in names else [self.default, *names]


_FIELDS = {f.name for f in fields(QueueSpec)}


def parse_queues(data: Any, source: str, default: str = "default") -> QueueTable:
    """Build a `QueueTable` from parsed YAML (`source` names it in errors)."""
    if data is None:
        return QueueTable((), default)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with a 'queues' key")
    unknown = set(data) - {"queues", "default"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    default = data.get("default", default)
    raw = data.get("queues") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: 'queues' must map queue names to settings")
    specs = [_spec(name, body, source) for name, body in raw.items()]
    return QueueTable(tuple(specs), str(default))


def _spec(name: object, body: object, source: str) -> QueueSpec:
    where = f"{source}: queue {name!r}"
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {body!r}")
    unknown = set(body) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    values = dict(body)
    tasks = values.get("tasks", ())
    if isinstance(tasks, str) or not isinstance(tasks, Iterable):
        raise ConfigError(f"{where}: 'tasks' must be a list of task-name patterns")
    values["tasks"] = tuple(str(t) for t in tasks)
    try:
        return QueueSpec(name=str(name), **values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_queues(path: str | Path, default: str = "default") -> QueueTable:
    """Read queue definitions from the YAML file at `path`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"queues file {str(path)!r} cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"queues file {str(path)!r} is not valid YAML: {exc}") from exc
    return parse_queues(data, f"queues file {str(path)!r}", default)
