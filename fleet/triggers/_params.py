"""Store-side helpers of `fleet.triggers`: filters and condition (de)serialization.

Job: validate cron expressions and filter values; turn a `Condition` into plain
parameters every store can keep (JSON-safe except a top-level result `value`, which
stays bytes) and back; define the `triggers` filter and the firing orders once for all
stores.
Contract: `condition_from(kind, condition_params(c)) == c` for every valid condition.
"""

from __future__ import annotations

import base64
import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fleet.errors import ConfigError
from fleet.status import Status
from fleet.triggers import (
    _DEFAULTS,
    _PARAMS,
    Condition,
    Firing,
    Kind,
    Scalar,
    TriggerDefinition,
)


def _scalars(what: str, values: Mapping[str, Scalar]) -> None:
    for key, value in values.items():
        ok = value is None or isinstance(value, (str, int, float, bool))
        if not isinstance(key, str) or not key or not ok:
            raise ConfigError(f"{what} {key!r}: {value!r}: keys are names, values scalars")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{what} {key!r}: {value!r} is not finite")


def valid_cron(expression: str) -> bool:
    """Whether croniter accepts `expression` (5 to 7 fields, or @hourly and friends)."""
    try:
        croniter: Any = importlib.import_module("croniter")
    except ModuleNotFoundError as exc:
        raise ConfigError("cron triggers need croniter: pip install croniter") from exc
    return bool(croniter.croniter.is_valid(expression))


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
    """A condition's parameters as a plain mapping (status by value; value as bytes;
    composite parts as JSON-safe mappings with their value in base64)."""
    params: dict[str, Any] = {}
    for name in sorted(_PARAMS[cond.kind]):
        value = getattr(cond, name)
        if value == _DEFAULTS[name]:
            continue
        if name == "status":
            value = Status(value).value
        elif name == "parts":
            value = [_part_params(part) for part in value]
        elif name in ("payload", "where"):
            value = dict(value)
        params[name] = value
    return params


def _part_params(cond: Condition) -> dict[str, Any]:
    params = condition_params(cond)
    if params.get("value") is not None:
        params["value"] = base64.b64encode(params["value"]).decode("ascii")
    return {"kind": cond.kind.value, **params}


def condition_from(kind: str, params: Mapping[str, Any]) -> Condition:
    """The inverse of `condition_params`."""
    values = dict(params)
    if values.get("status") is not None:
        values["status"] = Status(values["status"])
    if values.get("value") is not None:
        values["value"] = bytes(values["value"])
    if "parts" in values:
        values["parts"] = tuple(_part_from(part) for part in values["parts"])
    return Condition(Kind(kind), **values)


def _part_from(params: Mapping[str, Any]) -> Condition:
    values = dict(params)
    kind = values.pop("kind")
    if isinstance(values.get("value"), str):
        values["value"] = base64.b64decode(values["value"])
    return condition_from(kind, values)


def firing_order(firings: Sequence[Firing], limit: int) -> list[Firing]:
    """Firings sorted oldest first, at most `limit` (the memory store uses it)."""
    return sorted(firings, key=lambda f: (f.fired_at, f.trigger, f.key))[: max(0, limit)]


def newest_first(firings: Sequence[Firing], limit: int) -> list[Firing]:
    ordered = sorted(firings, key=lambda f: (f.fired_at, f.key), reverse=True)
    return ordered[: max(0, limit)]
