"""Setting sources: reading `[tool.fleet]`, YAML files and `FLEET__` variables.

Job: find and read each source of settings as raw values with a description of where
they came from, and make relative paths absolute. Used by `fleet.config` only (see its
module doc for the order of the sources and the rules for relative paths).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from fleet.errors import ConfigError

ENV_PREFIX = "FLEET__"


def find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def project_root(cwd: Path) -> Path:
    """The folder relative paths from env, keywords and defaults are resolved against."""
    found = find_pyproject(cwd)
    return found.parent if found is not None else cwd


PATH_KEYS = ("config", "queues_file", "health_dir", "broker_url", "state_url")
"""Settings that may hold a relative path (a sqlite URL, for the URLs)."""


def resolve_path(key: str, value: str, base: Path) -> str:
    """`value` of setting `key` with a relative path made absolute against `base`."""
    if key in ("config", "queues_file", "health_dir"):
        return os.path.abspath(base / value) if value else value
    scheme, sep, rest = value.partition("://")
    if scheme.lower() != "sqlite" or not sep or not rest.startswith("/"):
        return value  # not a file URL; malformed ones are refused where they are opened
    path = rest[1:]
    if not path or path.startswith("/") or path.startswith(":memory:") or "?" in path:
        return value
    return f"{scheme}:///{os.path.abspath(base / path)}"


def from_pyproject(cwd: Path) -> tuple[dict[str, Any], str]:
    path = find_pyproject(cwd)
    if path is None:
        return {}, ""
    source = f"{path} [tool.fleet]"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    section = data.get("tool", {}).get("fleet", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{source} must be a table")
    return section, source


def from_yaml(path: str, origin: str) -> tuple[dict[str, Any], str]:
    source = f"config file {path} ({origin})"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source} cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if data is None:
        return {}, source
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of settings, got {type(data).__name__}")
    return data, source


def from_env(environ: Mapping[str, str], fields: Collection[str]) -> dict[str, tuple[str, str]]:
    """`FLEET__<KEY>` values; `FLEET__<KEY>_FILE=path` reads KEY from a file (a mounted
    secret: the value never enters the environment of the worker or its tasks)."""
    found: dict[str, tuple[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in fields and key.endswith("_file") and key[:-5] in fields:
            key = key[:-5]
            if f"{ENV_PREFIX}{key.upper()}" in environ:
                raise ConfigError(f"both {ENV_PREFIX}{key.upper()} and {name} are set; set one")
            try:
                text = Path(value).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{name}: cannot read {value!r}: {exc.strerror}") from exc
            # One trailing newline is the file's, not the value's (echo, kubectl).
            found[key] = (text.removesuffix("\n").removesuffix("\r"), f"file {value} (env {name})")
            continue
        found[key] = (value, f"env {name}")
    return found
