"""Setting values: parsing a value into its setting's type and checking it.

Job: turn what a source gave (a YAML or TOML value, or a string from the environment)
into the typed value of one setting, refusing what does not fit with a `ConfigError`
naming the setting and the source; and check settings that must agree with each other.
Used by `fleet.config` only.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from fleet.errors import ConfigError

CHOICES = {
    "codec": ("msgpack", "json", "pickle"),
    "publish_confirm": ("background", "wait"),
    "log_format": ("text", "json"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
}


def coerce_value(key: str, hint_type: Any, value: Any, source: str) -> Any:
    """Check `value` against `hint_type`, the type of setting `key`; strings from the
    environment are parsed."""
    try:
        value = _coerce(hint_type, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"setting {key!r} (from {source}): expected {_type_name(hint_type)}, got {value!r}"
        ) from exc
    if key == "signing_keys":
        from fleet.signing import parse_keys

        try:
            parse_keys(value)
        except ConfigError as exc:
            raise ConfigError(f"setting {key!r} (from {source}): {exc}") from None
    choices = CHOICES.get(key)
    if choices is not None:
        if key == "log_level":
            value = str(value).upper()
        if value not in choices:
            raise ConfigError(
                f"setting {key!r} (from {source}): must be one of {choices}, got {value!r}"
            )
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"setting {key!r} (from {source}): must be >= 0, got {value!r}")
    return value


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        raise TypeError(value)
    if tp is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.strip().replace("_", ""))
        raise TypeError(value)
    if tp is float:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError(value)
    if origin is tuple:
        items = [i for i in value.split(",") if i.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise TypeError(value)
        names = tuple(item.strip() if isinstance(item, str) else item for item in items)
        if not all(isinstance(n, str) and _is_module_name(n) for n in names):
            raise ValueError(value)
        return names
    if origin in (Mapping, dict):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, Mapping):
            raise TypeError(value)
        return {str(k): v for k, v in value.items()}
    raise TypeError(f"unsupported setting type {tp!r}")  # pragma: no cover


def _is_module_name(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS |= {"0": False, "false": False, "no": False, "off": False}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    if typing.get_origin(tp) is tuple:
        return "a list of dotted module names"
    if isinstance(tp, types.GenericAlias) or typing.get_origin(tp):
        return "a mapping"
    return str(tp)


def check_together(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Refuse settings that contradict each other (`values` holds every setting)."""
    beat, dead = values["heartbeat_interval"], values["dead_after"]
    if dead <= beat:
        raise ConfigError(
            f"setting 'dead_after' ({dead!r}, from {sources['dead_after']}) must be greater"
            f" than 'heartbeat_interval' ({beat!r}, from {sources['heartbeat_interval']}):"
            " every live runner would be taken for dead between two heartbeats"
        )
