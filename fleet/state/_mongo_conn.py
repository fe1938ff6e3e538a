"""Connecting to MongoDB from a `state_url`, and turning its failures into StateErrors.

Job: check the options of `MongoStateStore`, build the pymongo client (retryable writes
on, timeouts from the options unless the URL sets its own), and word connection
failures so that an operator sees which host, which timeout, and never a password.

Contract:
- `parse_options` rejects unknown options and wrong values with ConfigError naming them.
- `client_for(url, options)` makes a `MongoClient` that connects lazily (no I/O here);
  the URL's own `serverSelectionTimeoutMS` / `connectTimeoutMS` / `socketTimeoutMS`
  win over the options. TLS, authentication (and `authSource`), replica set and
  `mongodb+srv://` seed lists come from the URL as pymongo reads them.
- Replica sets (`replica_settings`): writes default to write concern `majority` (a
  committed outcome survives a failover; a URL `w=` wins, except `w=0`, refused: fleet
  must know a claim or commit took effect); retryable writes and reads are always on
  (`retryWrites=false` is refused: a claim retried across a failover must not be
  lost); reads go to the primary (`readPreference` other than `primary` is refused:
  a claim, the waiter's fallback and recovery must read their own writes, and a
  secondary may lag behind them). Each refusal is a ConfigError naming the setting.
- `describe(exc, ...)` words an exception for a StateError: "MongoDB at HOSTS not
  reachable within Ns (...)" for a server that cannot be selected in time; the secrets
  of the URL (`fleet._urls.secrets_of`) never appear, even if a driver message carried
  them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from fleet._urls import host_part, scrub
from fleet.errors import ConfigError

_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    connect_timeout: float = 10.0
    """Seconds to find a usable server (and to open a connection) before failing."""
    socket_timeout: float = 60.0
    """Seconds one command may wait for its reply (large values take longest)."""
    retention: float = 7 * 86400.0
    """Seconds finished invocations (and runner and firing records) are kept; 0 forever."""
    prefix: str = "fleet_"
    """Collection name prefix."""
    database: str = "fleet"
    """Database when the URL names none."""
    chunk_size: int = 8 * MiB
    """Largest blob chunk (one document); values above it are split."""
    inline_limit: int = 4 * MiB
    """Args or results above this many bytes go to the blob store, not the document."""


def parse_options(given: Mapping[str, object]) -> Options:
    defaults = Options()
    known = sorted(Options.__dataclass_fields__)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"MongoStateStore: unknown option(s) {unknown}; known: {known}")
    values: dict[str, Any] = {}
    for key, value in given.items():
        default = getattr(defaults, key)
        if not _good(key, value, default):
            raise ConfigError(f"MongoStateStore: option {key!r} has a bad value {value!r}")
        number = isinstance(default, float) and isinstance(value, (int, float))
        values[key] = float(value) if number else value  # type: ignore[arg-type]  # checked
    return Options(**values)


def _good(key: str, value: object, default: object) -> bool:
    if isinstance(default, str):
        return (
            isinstance(value, str)
            and bool(value)
            and (key != "prefix" or bool(_PREFIX.match(value)))
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(default, int):
        low, high = (1024, 15 * MiB) if key == "chunk_size" else (1, 6 * MiB)
        return isinstance(value, int) and low <= value <= high
    return math.isfinite(value) and (value >= 0 if key == "retention" else value > 0)


def hosts_of(url: str) -> str:
    """The hosts of a mongodb:// URL as written ('a:1,b:2'), without credentials."""
    hosts = host_part(url) or "localhost"
    return f"{hosts} (SRV)" if url.lower().startswith("mongodb+srv://") else hosts


_FALSE = ("false", "0", "no", "off")


def replica_settings(url: str) -> dict[str, Any]:
    """The client settings fleet adds to `url` for replica sets (see the module doc);
    ConfigError for a URL setting that would break fleet's guarantees."""
    query = {key.lower(): value for key, value in parse_qsl(urlsplit(url).query)}
    where = f"state_url {hosts_of(url)!r}"
    if query.get("w", "").strip() == "0":
        raise ConfigError(
            f"{where}: w=0 (unacknowledged writes) is not allowed: fleet must know that a "
            "claim or a commit took effect; use w=majority (the default)"
        )
    if query.get("retrywrites", "true").strip().lower() in _FALSE:
        raise ConfigError(
            f"{where}: retryWrites=false is not allowed: a claim or commit interrupted by "
            "a replica-set failover must be retried once, not lost; drop the setting"
        )
    preference = query.get("readpreference", "primary").strip()
    if preference.lower() != "primary":
        raise ConfigError(
            f"{where}: readPreference={preference!r} is not allowed: claims, results and "
            "recovery read their own writes, which a lagging secondary may not have; "
            "use readPreference=primary (the default)"
        )
    settings: dict[str, Any] = {"retryWrites": True, "retryReads": True}
    if "w" not in query:
        settings["w"] = "majority"
    return settings


def client_for(url: str, options: Options) -> MongoClient[dict[str, Any]]:
    query = {key.lower() for key, _ in parse_qsl(urlsplit(url).query)}
    kwargs: dict[str, Any] = {
        **replica_settings(url),
        "appname": "fleet",
        "connect": False,
    }
    for key, seconds in (
        ("serverSelectionTimeoutMS", options.connect_timeout),
        ("connectTimeoutMS", options.connect_timeout),
        ("socketTimeoutMS", options.socket_timeout),
    ):
        if key.lower() not in query:
            kwargs[key] = int(seconds * 1000)
    return MongoClient(url, **kwargs)


def describe(
    exc: BaseException, hosts: str, timeout: float, what: str, secrets: Sequence[str]
) -> str:
    """One line for a StateError about `exc`, raised while doing `what`."""
    text = str(exc)
    if isinstance(exc, ServerSelectionTimeoutError):
        cause = text.split(", Timeout:", 1)[0]
        message = f"MongoDB at {hosts} not reachable within {timeout:g}s ({what}): {cause}"
    elif isinstance(exc, ConnectionFailure):
        message = f"MongoDB at {hosts}: connection failed during {what}: {text}"
    elif isinstance(exc, PyMongoError):
        message = f"MongoDB at {hosts}: {what} failed: {text}"
    else:
        message = f"MongoDB at {hosts}: {what} failed: {type(exc).__name__}: {text}"
    return scrub(message, secrets)
