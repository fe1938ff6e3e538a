"""Backend URLs: pick an implementation by scheme, and make URLs safe to log.

Job: map the scheme of `broker_url` / `state_url` to a class through an explicit table,
importing it only when used, and strip credentials before a URL reaches a log line or
an error message. A missing optional dependency is reported with the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from fleet.errors import ConfigError

EXTRAS = {"pika": "rabbitmq", "aio_pika": "rabbitmq", "pymongo": "mongo", "bson": "mongo"}


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep:
        scheme = url.rstrip(":/")
    return scheme.lower()


def load_backend(table: Mapping[str, str], url: str, setting: str) -> type:
    """Import and return the class that `table` names for `url`'s scheme."""
    scheme = scheme_of(url)
    target = table.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in sorted(table))
        raise ConfigError(
            f"{setting} {redact(url)!r}: unknown scheme {scheme!r}; use one of {known}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        raise ConfigError(
            f"{setting} {redact(url)!r} needs the optional dependency {exc.name!r}: "
            f"pip install 'fleet-tasks[{extra}]'"
        ) from exc
    cls = getattr(module, class_name)
    assert isinstance(cls, type)
    return cls


def redact(url: str) -> str:
    """Return `url` with any password replaced by '***' (safe for logs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}" if user else f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
