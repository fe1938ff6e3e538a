"""Queue definitions (from YAML) and task routing.

Job: describe every queue fleet declares on a broker, and decide which queue a task's
invocations go to.

Contract: `load_queues(path)` reads a YAML file shaped like `configs/queues.yaml` and
returns a `QueueTable`; any unknown key, wrong type or impossible combination raises
`ConfigError` naming the file, the queue, the key and what is allowed (booleans must be
YAML booleans, counts integers, never `true`; RabbitMQ's limits are checked here, not at
declare time). Routing, in order: the task's `queue=` option, the first queue whose
`tasks` patterns (shell-style, on the dotted task name) match, then the default queue.
Every queue gets a dead-letter exchange `<name>.dlx` and dead-letter queue `<name>.dead`
unless `dead_letter: false`.

Queues are a checked contract: the defined queues are the configured ones plus the
default queue (with no queues file, only the default queue exists). A task whose
`queue=` names another queue is refused when it is defined (`check_task`), a worker
asked for an undefined queue is refused (`check`), and nothing declares an undefined
queue (`declarable`). A worker given no queues consumes the default queue and those its
app's tasks route to (`worker_queues`).
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import yaml

from fleet.errors import ConfigError, TaskDefinitionError

log = logging.getLogger(__name__)

QUEUE_TYPES = ("quorum", "classic")
OVERFLOWS = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_TTL = (2**32 - 1) / 1000
"""Longest message_ttl in seconds: RabbitMQ holds it as an unsigned 32-bit count of ms."""
MAX_PRIORITY = 255
"""Highest max_priority RabbitMQ accepts."""


class _QueueOption(Protocol):
    @property
    def queue(self) -> str | None: ...


class RoutedTask(Protocol):
    """What routing needs of a task (`fleet.task.Task` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def options(self) -> _QueueOption: ...


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
        if self.type == "quorum" and self.overflow == "reject-publish-dlx":
            raise ConfigError(
                f"{where}: overflow 'reject-publish-dlx' needs type: classic (RabbitMQ quorum "
                "queues would drop from the head instead); with type: quorum use "
                "'reject-publish' or 'drop-head'"
            )
        if not isinstance(self.dead_letter, bool):
            raise ConfigError(
                f"{where}: dead_letter must be true or false (a YAML boolean, unquoted), "
                f"got {self.dead_letter!r}"
            )
        for key in ("delivery_limit", "max_length", "max_priority"):
            value = getattr(self, key)
            if value is not None and (_not_int(value) or value < 1):
                raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if self.max_priority is not None and self.type != "classic":
            raise ConfigError(f"{where}: max_priority needs type: classic")
        if self.max_priority is not None and self.max_priority > MAX_PRIORITY:
            raise ConfigError(
                f"{where}: max_priority must be at most {MAX_PRIORITY}, got {self.max_priority!r}"
            )
        if _not_int(self.prefetch) or self.prefetch < 0:
            raise ConfigError(f"{where}: prefetch must be an integer >= 0, got {self.prefetch!r}")
        ttl = self.message_ttl
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, (int, float))
            or not math.isfinite(ttl)
            or not 0 < ttl <= MAX_TTL
        ):
            raise ConfigError(
                f"{where}: message_ttl must be seconds > 0 and at most {MAX_TTL} "
                f"(2^32-1 ms), got {ttl!r}"
            )
        if not isinstance(self.tasks, tuple) or not all(
            isinstance(t, str) and t for t in self.tasks
        ):
            raise ConfigError(
                f"{where}: tasks must be a list of task-name patterns (non-empty strings), "
                f"got {self.tasks!r}"
            )


def _not_int(value: object) -> bool:
    """True unless `value` is an int (YAML's `true` is a bool, which Python calls an int)."""
    return isinstance(value, bool) or not isinstance(value, int)


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

    def declarable(self, names: Sequence[str]) -> list[QueueSpec]:
        """The specs of the defined queues among `names`, to declare. An undefined name
        (only an invocation recorded before its queue left the queues file can still
        route there) is logged and skipped: declaring it would create a queue nobody
        consumes, and refusing would hold up the other queues of a recovery batch."""
        known = self.names()
        for name in names:
            if name not in known:
                log.error("not declaring %s", self._unknown(name, known))
        return [self.get(name) for name in names if name in known]

    def route(self, task_name: str, option: str | None = None) -> str:
        """The queue for `task_name`, honouring the task's own `queue=` option first."""
        if option:
            return option
        for spec in self.queues:
            if any(fnmatch.fnmatchcase(task_name, pattern) for pattern in spec.tasks):
                return spec.name
        return self.default

    def names(self) -> list[str]:
        """Every defined queue: the configured ones and the default queue."""
        names = [spec.name for spec in self.queues]
        return names if self.default in names else [self.default, *names]

    def check(self, names: Iterable[str], what: str) -> None:
        """Raise `ConfigError` naming `what` (e.g. '--queues') for an undefined queue."""
        known = self.names()
        for name in names:
            if name not in known:
                raise ConfigError(f"{what}: {self._unknown(name, known)}")

    def check_task(self, task_name: str, option: str | None) -> None:
        """Refuse a task whose `queue=` option names an undefined queue."""
        known = self.names()
        if option and option not in known:
            raise TaskDefinitionError(
                f"task {task_name!r}: queue={option!r}: {self._unknown(option, known)}"
            )

    def worker_queues(
        self, given: Sequence[str], tasks: Iterable[RoutedTask], what: str = "worker queues"
    ) -> list[str]:
        """The queues a worker consumes: `given` (each must be defined), else the default
        queue and those the app's `tasks` route to, in definition order; every defined
        queue when the app has no tasks yet (a worker that imports task modules as
        messages name them)."""
        if given:
            self.check(given, what)
            return list(given)
        routed = {self.route(task.name, task.options.queue) for task in tasks}
        if not routed:
            return self.names()
        return [name for name in self.names() if name in routed or name == self.default]

    @staticmethod
    def _unknown(name: str, known: list[str]) -> str:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (
            f"queue {name!r} is not defined; defined queues: {known} (add it to the "
            f"queues file, setting queues_file){hint}"
        )


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
    if not isinstance(default, str) or not default:
        raise ConfigError(f"{source}: 'default' must be a queue name, got {default!r}")
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
        raise ConfigError(
            f"{where}: tasks must be a list of task-name patterns (non-empty strings), "
            f"got {tasks!r}"
        )
    values["tasks"] = tuple(tasks)
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
