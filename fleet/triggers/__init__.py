"""Trigger definitions and their firings: what to call, and when.

Job: describe a trigger (a condition and the task it calls) as plain data, and define
the small interface every state store implements to keep them. Evaluating conditions
is the engine's job (`fleet.triggers._engine`, behind `TriggerExtension`); declaring
them with the `Trigger` builder is `fleet.triggers._declare`.

Contract:
- `Condition` is one of seven kinds, each with its own parameters, validated when built
  (use the constructors `Condition.on_cron`, `.on_status`, `.on_result`,
  `.on_exception`, `.on_event`, `.all_of`, `.any_of`):
  `cron` (a croniter expression, a time zone, a catch-up policy `skip`/`once`/`all`
  with a bound `limit`), `status` (a watched task reaching a status, or any status),
  `result` (a watched task succeeding, optionally with one encoded value), `exception`
  (a watched task failing, optionally with one exception type, dotted name; subclasses
  match), `event` (a custom event by name, optionally filtered by payload fields equal
  to given scalars), `all` / `any` (composites of the non-cron kinds; `all` needs every
  part hit within `window` seconds). The task kinds also filter on the watched
  invocation's named arguments (`where`, equality on scalars); `check` names a
  registered predicate (`fleet.triggers.function`).
- `TriggerDefinition` names its condition and the target task, with the target's fixed
  call encoded ahead of time (`args`, by `codec`; see `fleet.codec.encode_call`), and
  how to derive more arguments from the source (`derive`: parameter -> source path;
  `function`: a registered function).
- `TriggerStore`: `save_trigger` inserts or replaces by id; `triggers` lists
  definitions ordered by (created, id), filtered by kind, watched task or event name
  (composites are listed by kind only); `delete_trigger` removes one, its firings and
  its hits; `record_firing` records one firing and returns False when that trigger
  already fired with that key (a unique constraint in the store, so racing evaluators
  fire once); `settle_firing` marks a pending firing done (with its error, if any);
  `pending_firings` lists firings recorded before a time and never settled (to
  recover); `firings` lists the newest first; `record_hit` / `hits` keep the condition
  hits a composite is evaluated over (one per (trigger, part, key)).
- Stores keep definitions exactly: what `triggers` returns equals what was saved.
"""

from __future__ import annotations

import math
import zoneinfo
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fleet.errors import ConfigError
from fleet.status import Status

Scalar = str | int | float | bool | None


class Kind(StrEnum):
    """What a trigger waits for."""

    CRON = "cron"
    STATUS = "status"
    RESULT = "result"
    EXCEPTION = "exception"
    EVENT = "event"
    ALL = "all"
    ANY = "any"


CATCHUP = ("skip", "once", "all")
DEFAULT_CATCHUP_LIMIT = 100
_TASK_FILTERS = frozenset({"task", "where", "check"})
_PARAMS: dict[Kind, frozenset[str]] = {
    Kind.CRON: frozenset({"cron", "timezone", "catchup", "limit"}),
    Kind.STATUS: _TASK_FILTERS | {"status"},
    Kind.RESULT: _TASK_FILTERS | {"value"},
    Kind.EXCEPTION: _TASK_FILTERS | {"exception"},
    Kind.EVENT: frozenset({"event", "payload", "check"}),
    Kind.ALL: frozenset({"parts", "window"}),
    Kind.ANY: frozenset({"parts"}),
}
_REQUIRED: dict[Kind, tuple[str, ...]] = {
    Kind.CRON: ("cron",),
    Kind.STATUS: ("task",),
    Kind.RESULT: ("task",),
    Kind.EXCEPTION: ("task",),
    Kind.EVENT: ("event",),
    Kind.ALL: ("parts", "window"),
    Kind.ANY: ("parts",),
}


@dataclass(frozen=True, slots=True)
class Condition:
    """When a trigger fires. Build it with one of the classmethod constructors."""

    kind: Kind
    cron: str = ""
    timezone: str = ""
    """Kind cron: the IANA zone the expression is read in; '': UTC."""
    catchup: str = ""
    """Kind cron: ticks missed while no leader ran: 'skip' (''), 'once' or 'all'."""
    limit: int = 0
    """Kind cron, catch-up 'all': at most this many missed ticks (0: the default 100)."""
    task: str = ""
    """The watched task (kinds status, result, exception)."""
    status: Status | None = None
    """Kind status: the status reached; None: any status change."""
    value: bytes | None = None
    """Kind result: the encoded value that fires it (same codec as the trigger); None: any."""
    exception: str = ""
    """Kind exception: dotted name of the exception type (subclasses match); '': any."""
    event: str = ""
    payload: Mapping[str, Scalar] = field(default_factory=dict)
    """Kind event: payload fields that must equal these values."""
    where: Mapping[str, Scalar] = field(default_factory=dict)
    """Task kinds: named arguments of the watched invocation that must equal these."""
    check: str = ""
    """A registered predicate ('module:qualname') that must return True for the source."""
    parts: tuple[Condition, ...] = ()
    """Kinds all, any: the conditions combined."""
    window: float = 0.0
    """Kind all: every part must be hit within this many seconds."""

    def __post_init__(self) -> None:
        kind = Kind(self.kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "payload", dict(self.payload))
        object.__setattr__(self, "where", dict(self.where))
        object.__setattr__(self, "parts", tuple(self.parts))
        given = {name for name in _FIELDS if getattr(self, name) != _DEFAULTS[name]}
        stray = sorted(given - _PARAMS[kind])
        if stray:
            raise ConfigError(f"a {kind.value} condition takes no {', '.join(stray)}")
        missing = [name for name in _REQUIRED[kind] if name not in given]
        if missing:
            raise ConfigError(f"a {kind.value} condition needs {', '.join(missing)}")
        if kind is Kind.CRON:
            self._check_cron()
        if self.status is not None:
            object.__setattr__(self, "status", Status(self.status))
        _scalars("event payload filter", self.payload)
        _scalars("argument filter", self.where)
        for part in self.parts:
            if not isinstance(part, Condition) or part.kind in (Kind.CRON, Kind.ALL, Kind.ANY):
                what = (
                    f"a {part.kind.value} condition" if isinstance(part, Condition) else repr(part)
                )
                raise ConfigError(f"a composite combines outcome or event conditions, not {what}")
        if not (math.isfinite(self.window) and self.window >= 0):
            raise ConfigError(f"composite window {self.window!r} must be seconds >= 0")

    def _check_cron(self) -> None:
        if not valid_cron(self.cron):
            raise ConfigError(f"invalid cron expression {self.cron!r}")
        if self.catchup not in ("", *CATCHUP):
            raise ConfigError(f"catch-up policy {self.catchup!r}: use one of {', '.join(CATCHUP)}")
        if self.limit < 0:
            raise ConfigError(f"catch-up limit {self.limit!r} must be >= 0")
        if self.timezone:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(f"unknown time zone {self.timezone!r}") from exc

    @property
    def subject(self) -> str:
        """What it watches: the task (status, result, exception), the event name, or ''."""
        return self.event if self.kind is Kind.EVENT else self.task

    @classmethod
    def on_cron(
        cls, expression: str, timezone: str = "", catchup: str = "", limit: int = 0
    ) -> Condition:
        return cls(Kind.CRON, cron=expression, timezone=timezone, catchup=catchup, limit=limit)

    @classmethod
    def on_status(
        cls,
        task: str,
        status: Status | None = None,
        where: Mapping[str, Scalar] | None = None,
        check: str = "",
    ) -> Condition:
        return cls(Kind.STATUS, task=task, status=status, where=dict(where or {}), check=check)

    @classmethod
    def on_result(
        cls,
        task: str,
        value: bytes | None = None,
        where: Mapping[str, Scalar] | None = None,
        check: str = "",
    ) -> Condition:
        return cls(Kind.RESULT, task=task, value=value, where=dict(where or {}), check=check)

    @classmethod
    def on_exception(
        cls,
        task: str,
        exception: str = "",
        where: Mapping[str, Scalar] | None = None,
        check: str = "",
    ) -> Condition:
        return cls(
            Kind.EXCEPTION, task=task, exception=exception, where=dict(where or {}), check=check
        )

    @classmethod
    def on_event(
        cls, event: str, payload: Mapping[str, Scalar] | None = None, check: str = ""
    ) -> Condition:
        return cls(Kind.EVENT, event=event, payload=dict(payload or {}), check=check)

    @classmethod
    def all_of(cls, parts: Sequence[Condition], window: float) -> Condition:
        return cls(Kind.ALL, parts=tuple(parts), window=window)

    @classmethod
    def any_of(cls, parts: Sequence[Condition]) -> Condition:
        return cls(Kind.ANY, parts=tuple(parts))


_FIELDS = tuple(f.name for f in fields(Condition) if f.name != "kind")
_DEFAULTS: dict[str, Any] = {
    f.name: ({} if f.name in ("payload", "where") else f.default)
    for f in fields(Condition)
    if f.name != "kind"
}


@dataclass(frozen=True, slots=True)
class TriggerDefinition:
    """A condition and the task it calls."""

    id: str
    name: str
    condition: Condition
    task: str
    """The task to call when it fires."""
    args: bytes = b""
    """The target call's fixed arguments (fleet.codec.encode_call); b'': no arguments."""
    codec: str = "msgpack"
    enabled: bool = True
    created: float = 0.0
    derive: Mapping[str, str] = field(default_factory=dict)
    """Target parameter -> source path ('result', 'result.total', 'args.order_id',
    'payload.order_id', 'payload', 'source', 'event'), merged over the fixed keywords."""
    function: str = ""
    """A registered function ('module:qualname') returning the call's keyword arguments."""
    declared: bool = False
    """Declared on the target task (`@app.task(triggers=...)`): replaced or removed when
    the task's declaration changes; False for triggers added at run time."""

    def __post_init__(self) -> None:
        if not self.id or not self.task:
            raise ConfigError(f"trigger {self.name!r} needs an id and a target task")
        if not isinstance(self.condition, Condition):
            raise ConfigError(f"trigger {self.id!r}: condition must be a Condition")
        object.__setattr__(self, "derive", dict(self.derive))
        for param, path in self.derive.items():
            head = path.split(".", 1)[0]
            if not isinstance(param, str) or not param or head not in SOURCE_ROOTS:
                roots = ", ".join(SOURCE_ROOTS)
                raise ConfigError(
                    f"trigger {self.id!r}: derived argument {param!r}: {path!r} must start"
                    f" with one of {roots}"
                )


SOURCE_ROOTS = ("result", "args", "payload", "source", "event")


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing of a trigger; `key` makes it unique (e.g. the cron tick, the source id)."""

    trigger: str
    key: str
    fired_at: float
    invocation: str = ""
    """The invocation it started (its id is chosen before submitting), if any."""
    source: str = ""
    """What fired it: the source invocation id, 'event:<name>:<id>', or 'cron:<tick>'."""
    error: str = ""
    """Why it started nothing (a derived argument that does not fit, a failed submit)."""
    call: bytes = b""
    """The encoded call submitted (kept to submit again when recovering)."""
    pending: bool = False
    """Recorded but not yet known to be submitted; see `TriggerStore.pending_firings`."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One part of a composite condition met by one source, at a time."""

    trigger: str
    part: int
    key: str
    at: float


class TriggerStore(ABC):
    """Where trigger definitions and firings live. See the module docstring."""

    @abstractmethod
    def save_trigger(self, definition: TriggerDefinition) -> None:
        """Insert the definition, or replace the one with the same id."""

    @abstractmethod
    def delete_trigger(self, trigger_id: str) -> bool:
        """Remove a definition and its firings; False if there was none."""

    @abstractmethod
    def triggers(
        self, kind: Kind | str | None = None, task: str | None = None, event: str | None = None
    ) -> list[TriggerDefinition]:
        """Definitions of `kind`, watching `task` or `event`, ordered by (created, id)."""

    @abstractmethod
    def record_firing(self, firing: Firing) -> bool:
        """Record a firing; False if the trigger already fired with this key."""

    @abstractmethod
    def firings(self, trigger_id: str, limit: int = 100) -> list[Firing]:
        """The latest firings of a trigger, newest first."""

    @abstractmethod
    def settle_firing(self, trigger_id: str, key: str, error: str = "") -> None:
        """Mark a firing no longer pending, with the error that stopped it, if any."""

    @abstractmethod
    def pending_firings(self, before: float, limit: int = 100) -> list[Firing]:
        """Firings still pending that were recorded before `before`, oldest first."""

    @abstractmethod
    def record_hit(self, hit: Hit, forget_before: float = 0.0) -> bool:
        """Record a composite part's hit (False if already recorded); forget the
        trigger's hits older than `forget_before`."""

    @abstractmethod
    def hits(self, trigger_id: str, since: float) -> list[Hit]:
        """The trigger's hits at or after `since`, oldest first."""


def trigger_store(store: object) -> TriggerStore:
    """`store` as a TriggerStore, or ConfigError naming it when its backend keeps none."""
    if not isinstance(store, TriggerStore):
        raise ConfigError(f"state store {store!r} does not store trigger definitions")
    return store


# Helpers live in _params (this module would pass 400 lines); imported here so that
# `from fleet.triggers import condition_params` keeps working.
# The builder needs only the codec: imported eagerly. The engine imports the core, which
# imports the state stores, which import this package: loaded on first use instead.
from fleet.triggers._declare import Trigger, function  # noqa: E402
from fleet.triggers._params import (  # noqa: E402
    _scalars,
    check_kind,
    condition_from,
    condition_params,
    firing_order,
    matches,
    newest_first,
    valid_cron,
)

if TYPE_CHECKING:
    from fleet.triggers._engine import TriggerExtension


def __getattr__(name: str) -> Any:
    if name == "TriggerExtension":
        from fleet.triggers._engine import TriggerExtension

        return TriggerExtension
    raise AttributeError(f"module 'fleet.triggers' has no attribute {name!r}")


__all__ = [
    "Condition",
    "Firing",
    "Hit",
    "Kind",
    "Trigger",
    "TriggerDefinition",
    "TriggerExtension",
    "TriggerStore",
    "check_kind",
    "condition_from",
    "condition_params",
    "firing_order",
    "function",
    "matches",
    "newest_first",
    "trigger_store",
]
