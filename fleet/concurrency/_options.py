"""The concurrency options of a task, parsed and checked once.

Job: turn the task options owned by `ConcurrencyExtension` (decorator keywords) into
one frozen `Policy`, refusing bad values with a `ConfigError` naming the option and
the value (`!r`).

Contract:
- `registration_concurrency` and `running_concurrency` take a `Mode` (or its name,
  any case) or a `Limit`; `running_concurrency=Limit(Mode.KEYS, limit=3)` allows three.
  Registration allows one (an equivalent call is reused, so a limit above 1 means
  nothing there and is refused).
- `key_arguments` names the arguments of the KEYS mode (both limits); it is required by
  KEYS and refused without it. `on_diff_non_key_args`: "reuse" (default) or "raise".
- `call_result_cache` (bool), `cache_ttl` (seconds > 0), `disable_cache_args` (names
  left out of the cache key).
- `rate_limit` "N/unit" with unit s, m, h or d (or "N/Xs", X seconds), `rate_limit_key`
  (argument names: one budget per value of those arguments; default one per task).
- `idempotency_ttl`: seconds an idempotency key is remembered (default one day).
- Argument names are checked against the function's parameters when its signature is
  known (`policy_of(options, signature)`).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleet.errors import ConfigError

OPTIONS = frozenset(
    {
        "registration_concurrency",
        "running_concurrency",
        "key_arguments",
        "on_diff_non_key_args",
        "call_result_cache",
        "cache_ttl",
        "disable_cache_args",
        "rate_limit",
        "rate_limit_key",
        "idempotency_ttl",
    }
)
DEFAULT_CACHE_TTL = 3600.0
DEFAULT_IDEMPOTENCY_TTL = 86400.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(?:(\d+(?:\.\d+)?)\s*)?([smhd])\s*$")


class Mode(StrEnum):
    """What makes two calls equivalent for a limit."""

    DISABLED = "DISABLED"
    """No limit."""
    TASK = "TASK"
    """Every call of the task is equivalent."""
    ARGUMENTS = "ARGUMENTS"
    """Calls with the same arguments (bound to the signature, defaults applied)."""
    KEYS = "KEYS"
    """Calls with the same values of the `key_arguments`."""


def _mode(value: object, option: str) -> Mode:
    if isinstance(value, Mode):
        return value
    if isinstance(value, str) and value.upper() in Mode.__members__:
        return Mode(value.upper())
    raise ConfigError(f"{option}: expected one of {[m.value for m in Mode]}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Limit:
    """A concurrency limit: `limit` equivalent invocations at once, per `mode`."""

    mode: Mode = Mode.DISABLED
    limit: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", _mode(self.mode, "mode"))
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigError(f"Limit: limit must be an int >= 1, got {self.limit!r}")

    @property
    def enabled(self) -> bool:
        return self.mode is not Mode.DISABLED


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` starts in any window of `period` seconds."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"RateLimit: count must be an int >= 1, got {self.count!r}")
        if not (isinstance(self.period, int | float) and math.isfinite(self.period)):
            raise ConfigError(f"RateLimit: period must be a number, got {self.period!r}")
        if self.period <= 0:
            raise ConfigError(f"RateLimit: period must be > 0, got {self.period!r}")

    @classmethod
    def parse(cls, text: str | RateLimit) -> RateLimit:
        """`"100/m"` -> RateLimit(100, 60.0); also `"5/10s"`; units s, m, h, d."""
        if isinstance(text, RateLimit):
            return text
        match = _RATE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                f"rate_limit {text!r}: expected 'N/unit' with unit s, m, h or d "
                "(e.g. '100/m', '5/10s')"
            )
        count, times, unit = match.groups()
        return cls(int(count), float(times or 1) * _UNITS[unit])

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything `ConcurrencyExtension` enforces for one task."""

    registration: Limit = Limit()
    running: Limit = Limit()
    key_arguments: tuple[str, ...] = ()
    on_diff_non_key_args: str = "reuse"
    cache: bool = False
    cache_ttl: float = DEFAULT_CACHE_TTL
    disable_cache_args: tuple[str, ...] = ()
    rate: RateLimit | None = None
    rate_key: tuple[str, ...] = ()
    idempotency_ttl: float = DEFAULT_IDEMPOTENCY_TTL

    @property
    def at_publish(self) -> bool:
        """Whether `before_publish` has work for this task (idempotency keys aside)."""
        return self.registration.enabled or self.cache

    @property
    def at_claim(self) -> bool:
        return self.running.enabled or self.rate is not None


NO_POLICY = Policy()


def policy_of(options: Mapping[str, Any], signature: inspect.Signature | None = None) -> Policy:
    """Parse the concurrency options of one task; see the module docstring.

    Raises:
        ConfigError: an unknown option, a bad value or an argument the task lacks.
    """
    stray = sorted(set(options) - OPTIONS)
    if stray:
        raise ConfigError(f"unknown concurrency option(s) {stray}; known: {sorted(OPTIONS)}")
    registration = _limit(options.get("registration_concurrency"), "registration_concurrency")
    if registration.limit != 1:
        raise ConfigError(
            f"registration_concurrency: limit must be 1 (an equivalent call is reused), "
            f"got {registration.limit!r}"
        )
    running = _limit(options.get("running_concurrency"), "running_concurrency")
    keys = _names(options.get("key_arguments", ()), "key_arguments", signature)
    uses_keys = Mode.KEYS in (registration.mode, running.mode)
    if uses_keys and not keys:
        raise ConfigError("concurrency mode KEYS needs key_arguments (the arguments to key on)")
    if keys and not uses_keys:
        raise ConfigError(f"key_arguments {keys!r} given, but no concurrency mode is KEYS")
    on_diff = options.get("on_diff_non_key_args", "reuse")
    if on_diff not in ("reuse", "raise"):
        raise ConfigError(f"on_diff_non_key_args must be 'reuse' or 'raise', got {on_diff!r}")
    cache = options.get("call_result_cache", False)
    if not isinstance(cache, bool):
        raise ConfigError(f"call_result_cache must be True or False, got {cache!r}")
    rate_text = options.get("rate_limit")
    rate = None if rate_text is None else RateLimit.parse(rate_text)
    rate_key = _names(options.get("rate_limit_key", ()), "rate_limit_key", signature)
    if rate_key and rate is None:
        raise ConfigError(f"rate_limit_key {rate_key!r} given without a rate_limit")
    return Policy(
        registration=registration,
        running=running,
        key_arguments=keys,
        on_diff_non_key_args=on_diff,
        cache=cache,
        cache_ttl=_seconds(options.get("cache_ttl", DEFAULT_CACHE_TTL), "cache_ttl"),
        disable_cache_args=_names(
            options.get("disable_cache_args", ()), "disable_cache_args", signature
        ),
        rate=rate,
        rate_key=rate_key,
        idempotency_ttl=_seconds(
            options.get("idempotency_ttl", DEFAULT_IDEMPOTENCY_TTL), "idempotency_ttl"
        ),
    )


def _limit(value: object, option: str) -> Limit:
    if value is None:
        return Limit()
    if isinstance(value, Limit):
        return value
    return Limit(_mode(value, option))


def _names(value: object, option: str, signature: inspect.Signature | None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{option} must be a tuple of argument names, got {value!r}")
    names = tuple(value)
    if signature is not None:
        params = signature.parameters
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        missing = [n for n in names if n not in params]
        if missing and not var_kw:
            raise ConfigError(
                f"{option} names {missing!r}, which the task does not take "
                f"(its parameters: {list(params)})"
            )
    return names


def _seconds(value: object, option: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    raise ConfigError(f"{option} must be a number of seconds > 0, got {value!r}")
