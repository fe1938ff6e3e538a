"""Trigger definitions and their firings: what to call, and when.

Job: describe a trigger (a condition and the task it calls) as plain data, and define
the small interface every state store implements to keep them. Evaluating conditions
(ticking cron expressions, watching outcomes, receiving events) is not done here.

Contract:
- `Condition` is one of five kinds, each with its own parameters, validated when built
  (use the constructors `Condition.cron`, `.on_status`, `.on_result`, `.on_exception`,
  `.on_event`):
  `cron` (a croniter expression), `status` (a watched task reaching a status),
  `result` (a watched task succeeding, optionally with one encoded value), `exception`
  (a watched task failing, optionally with one exception type, dotted name), `event`
  (a custom event by name, optionally filtered by payload fields equal to given scalars).
- `TriggerDefinition` names its condition and the target task, with the target's call
  encoded ahead of time (`args`, by `codec`; see `fleet.codec.encode_call`).
- `TriggerStore`: `save_trigger` inserts or replaces by id; `triggers` lists
  definitions ordered by (created, id), filtered by kind, watched task or event name;
  `delete_trigger` removes one and its firings; `record_firing` records one firing and
  returns False when that trigger already fired with that key (a unique constraint in
  the store, so racing evaluators fire once); `firings` lists the newest first.
- Stores keep definitions exactly: what `triggers` returns equals what was saved.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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


_PARAMS: dict[Kind, frozenset[str]] = {
    Kind.CRON: frozenset({"cron"}),
    Kind.STATUS: frozenset({"task", "status"}),
    Kind.RESULT: frozenset({"task", "value"}),
    Kind.EXCEPTION: frozenset({"task", "exception"}),
    Kind.EVENT: frozenset({"event", "payload"}),
}
_REQUIRED: dict[Kind, tuple[str, ...]] = {
    Kind.CRON: ("cron",),
    Kind.STATUS: ("task", "status"),
    Kind.RESULT: ("task",),
    Kind.EXCEPTION: ("task",),
    Kind.EVENT: ("event",),
}


def valid_cron(expression: str) -> bool:
    """Whether croniter accepts `expression` (5 to 7 fields, or @hourly and friends)."""
    try:
        croniter: Any = importlib.import_module("croniter")
    except ModuleNotFoundError as exc:
        raise ConfigError("cron triggers need croniter: pip install croniter") from exc
    return bool(croniter.croniter.is_valid(expression))


@dataclass(frozen=True, slots=True)
class Condition:
    """When a trigger fires. Build it with one of the classmethod constructors."""

    kind: Kind
    cron: str = ""
    task: str = ""
    """The watched task (kinds status, result, exception)."""
    status: Status | None = None
    value: bytes | None = None
    """Kind result: the encoded value that fires it (same codec as the trigger); None: any."""
    exception: str = ""
    """Kind exception: dotted name of the exception type; '': any exception."""
    event: str = ""
    payload: Mapping[str, Scalar] = field(default_factory=dict)
    """Kind event: payload fields that must equal these values."""

    def __post_init__(self) -> None:
        kind = Kind(self.kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "payload", dict(self.payload))
        given = {
            name
            for name in ("cron", "task", "status", "value", "exception", "event", "payload")
            if getattr(self, name) not in ("", None, {})
        }
        stray = sorted(given - _PARAMS[kind])
        if stray:
            raise ConfigError(f"a {kind.value} condition takes no {', '.join(stray)}")
        missing = [name for name in _REQUIRED[kind] if name not in given]
        if missing:
            raise ConfigError(f"a {kind.value} condition needs {', '.join(missing)}")
        if kind is Kind.CRON and not valid_cron(self.cron):
            raise ConfigError(f"invalid cron expression {self.cron!r}")
        if self.status is not None:
            object.__setattr__(self, "status", Status(self.status))
        for key, value in self.payload.items():
            ok = value is None or isinstance(value, (str, int, float, bool))
            if not isinstance(key, str) or not key or not ok:
                raise ConfigError(
                    f"event payload filter {key!r}: {value!r}: keys are names, values scalars"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"event payload filter {key!r}: {value!r} is not finite")

    @property
    def subject(self) -> str:
        """What it watches: the task (status, result, exception), the event name, or ''."""
        return self.event if self.kind is Kind.EVENT else self.task

    @classmethod
    def on_cron(cls, expression: str) -> Condition:
        return cls(Kind.CRON, cron=expression)

    @classmethod
    def on_status(cls, task: str, status: Status) -> Condition:
        return cls(Kind.STATUS, task=task, status=status)

    @classmethod
    def on_result(cls, task: str, value: bytes | None = None) -> Condition:
        return cls(Kind.RESULT, task=task, value=value)

    @classmethod
    def on_exception(cls, task: str, exception: str = "") -> Condition:
        return cls(Kind.EXCEPTION, task=task, exception=exception)

    @classmethod
    def on_event(cls, event: str, payload: Mapping[str, Scalar] | None = None) -> Condition:
        return cls(Kind.EVENT, event=event, payload=dict(payload or {}))


@dataclass(frozen=True, slots=True)
class TriggerDefinition:
    """A condition and the task it calls."""

    id: str
    name: str
    condition: Condition
    task: str
    """The task to call when it fires."""
    args: bytes = b""
    """The target call's encoded arguments (fleet.codec.encode_call); b'': no arguments."""
    codec: str = "msgpack"
    enabled: bool = True
    created: float = 0.0

    def __post_init__(self) -> None:
        if not self.id or not self.task:
            raise ConfigError(f"trigger {self.name!r} needs an id and a target task")
        if not isinstance(self.condition, Condition):
            raise ConfigError(f"trigger {self.id!r}: condition must be a Condition")


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing of a trigger; `key` makes it unique (e.g. the cron tick, the source id)."""

    trigger: str
    key: str
    fired_at: float
    invocation: str = ""
    """The invocation it started, if any."""


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


def trigger_store(store: object) -> TriggerStore:
    """`store` as a TriggerStore, or ConfigError naming it when its backend keeps none."""
    if not isinstance(store, TriggerStore):
        raise ConfigError(f"state store {store!r} does not store trigger definitions")
    return store


def matches(
    definition: TriggerDefinition, kind: str | None, task: str | None, event: str | None
) -> bool:
    """The one definition of the `triggers` filter (the memory store uses it)."""
    cond = definition.condition
    if kind is not None and cond.kind != Kind(kind):
        return False
    if task is not None and (cond.kind is Kind.EVENT or cond.task != task):
        return False
    return event is None or (cond.kind is Kind.EVENT and cond.event == event)


def check_kind(kind: Kind | str | None) -> Kind | None:
    """Validate a `kind` filter, naming a wrong one."""
    if kind is None:
        return None
    try:
        return Kind(kind)
    except ValueError:
        known = ", ".join(k.value for k in Kind)
        raise ConfigError(f"unknown trigger kind {kind!r}; use one of {known}") from None


def condition_params(cond: Condition) -> dict[str, Any]:
    """A condition's parameters as a plain mapping (status by value; value as bytes)."""
    params: dict[str, Any] = {}
    for name in sorted(_PARAMS[cond.kind]):
        value = getattr(cond, name)
        if name == "status" and value is not None:
            value = Status(value).value
        if value not in ("", None, {}):
            params[name] = value
    return params


def condition_from(kind: str, params: Mapping[str, Any]) -> Condition:
    """The inverse of `condition_params`."""
    values = dict(params)
    if values.get("status") is not None:
        values["status"] = Status(values["status"])
    if values.get("value") is not None:
        values["value"] = bytes(values["value"])
    return Condition(Kind(kind), **values)


def newest_first(firings: Sequence[Firing], limit: int) -> list[Firing]:
    ordered = sorted(firings, key=lambda f: (f.fired_at, f.key), reverse=True)
    return ordered[: max(0, limit)]


__all__ = [
    "Condition",
    "Firing",
    "Kind",
    "TriggerDefinition",
    "TriggerStore",
    "trigger_store",
]
