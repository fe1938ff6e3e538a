"""Settings: one typed object, loaded once from layered sources, each value traceable.

Job: produce the `Settings` every component reads, and say where each value came from.

Contract: sources apply lowest first: defaults, `[tool.fleet]` in `pyproject.toml` (the
nearest one at or above the working directory), a YAML file (`FLEET__CONFIG=path` or the
setting `config`), `FLEET__<KEY>` environment variables (or `FLEET__<KEY>_FILE` naming a
file that holds the value, for secrets mounted as files), keyword arguments to
`Fleet(...)`.
Every value is checked against the field's type (`fleet._config_values`; the sources
are read by `fleet._config_sources`); an unknown key or a wrong type raises
`ConfigError` naming the key and its source, and so does `dead_after` not above
`heartbeat_interval` (naming both); list settings (`task_modules`,
`codec_modules`) take a list in the files and a comma-separated string in the
environment, of dotted module names. Per-task overrides live under `tasks`
(`{task name: {option: value}}`) in the files and are validated when tasks are defined.
`load_settings` reads the environment only when called, never at import.

Relative paths (`config`, `queues_file`, and `sqlite:///relative.db` in `broker_url` and
`state_url`) never follow the working directory: one set in `pyproject.toml` or in the
YAML file is relative to that file's folder; one set by an environment variable, a
keyword argument or a default is relative to the project root, the folder of the
nearest `pyproject.toml` at or above the working directory (the working directory when
there is none). The settings hold the absolute results, so a script started from a
subfolder uses the same database and queues file (`fleet config show` prints them).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet._config_sources import (
    PATH_KEYS,
    from_env,
    from_pyproject,
    from_yaml,
    project_root,
    resolve_path,
)
from fleet._config_values import check_together, coerce_value
from fleet._urls import with_credentials
from fleet.errors import ConfigError

DEFAULT_DB = "sqlite:///.fleet/fleet.db"


@dataclass(frozen=True)
class Settings:
    """Every setting of a fleet app. Field docs double as `fleet config show` help."""

    name: str = "fleet"
    """Application name; separates apps sharing one broker and store."""
    broker_url: str = DEFAULT_DB
    """Where messages travel: sqlite:///path, memory://name, amqp://, amqps://. A relative
    sqlite path is made absolute (see the module doc)."""
    state_url: str = DEFAULT_DB
    """Where state lives: sqlite:///path, memory://name, mongodb://, mongodb+srv://."""
    broker_username: str = ""
    """User name put into broker_url (e.g. from FLEET__BROKER_USERNAME_FILE, a key of the
    Secret the RabbitMQ cluster operator makes); empty: the URL's own."""
    broker_password: str = ""
    """Password put into broker_url (best from FLEET__BROKER_PASSWORD_FILE); empty: the
    URL's own."""
    state_username: str = ""
    """User name put into state_url (e.g. from FLEET__STATE_USERNAME_FILE); empty: the
    URL's own."""
    state_password: str = ""
    """Password put into state_url (best from FLEET__STATE_PASSWORD_FILE, a key of the
    Secret a MongoDB chart makes); empty: the URL's own."""
    inline: bool = False
    """Run every decorated call in the caller's thread (tests, migration)."""
    inline_retry_sleep: bool = False
    """In inline mode, sleep the retry backoff between attempts (default: retry at once)."""
    direct_timeout: float = 300.0
    """Seconds a direct-task call waits for its value before ResultTimeoutError; 0 forever."""
    codec: str = "msgpack"
    """Argument and result encoding: msgpack, json, or pickle (with allow_pickle)."""
    allow_pickle: bool = False
    """Permit the pickle codec (decoding pickle runs arbitrary code)."""
    signing_keys: str = ""
    """HMAC keys that sign every message: KEY_ID:SECRET entries separated by commas or
    newlines, best from a mounted file (FLEET__SIGNING_KEYS_FILE). The first signs, all
    are accepted (rotation). A worker with keys dead-letters unsigned and forged messages
    without decoding them. Empty: messages are neither signed nor checked."""
    task_modules: tuple[str, ...] = ()
    """Modules a worker imports at start to register their tasks, besides the app's own
    module (a list, or comma-separated in FLEET__TASK_MODULES). Workers run only tasks
    registered this way; they never import a module a message names."""
    codec_modules: tuple[str, ...] = ()
    """Modules (with their submodules) whose enum, dataclass and named tuple classes the
    app's codec may rebuild, besides the modules of registered tasks. Default: none, so a
    message can only make a worker build classes of the task modules it already
    imported; list e.g. "shop.models" to pass its dataclasses as arguments."""
    config: str = ""
    """YAML settings file (also FLEET__CONFIG)."""
    queues_file: str = ""
    """YAML queue definitions; default configs/queues.yaml under the project root when it
    exists. Without one only the default queue exists."""
    default_queue: str = "default"
    """Queue for tasks with no route."""
    publish_timeout: float = 10.0
    """Seconds to wait for a publisher confirm."""
    publish_retries: int = 3
    """Attempts at an unconfirmed publish before raising PublishError."""
    publish_confirm: str = "background"
    """When a call on RabbitMQ returns: "background" once its record is durable in the
    state store, its publisher confirm awaited by a thread of the process (a publish
    that fails makes the invocation FAILED with PublishError, seen on its handle; a
    process that dies first leaves it to recovery after pending_timeout); "wait" only
    once RabbitMQ confirmed the message (PublishError raised by the call itself)."""
    connect_timeout: float = 10.0
    """Seconds to wait when connecting to a broker or state store."""
    connect_retry: float = 0.0
    """Seconds a process waits for RabbitMQ at start (retrying with backoff) before a
    connection error; 0 fails at once (Celery's broker_connection_retry_on_startup)."""
    processes: int = 0
    """Worker processes per supervisor; 0 means one per CPU."""
    threads: int = 1
    """Concurrent invocations per worker process."""
    heartbeat_interval: float = 3.0
    """Seconds between heartbeat writes of each runner."""
    dead_after: float = 9.0
    """Seconds without a heartbeat after which a runner is considered dead (must exceed
    heartbeat_interval; three intervals leave room for two late writes)."""
    host_id: str = ""
    """Identity of this host for same-host recovery (a starting worker requeues at once
    the work of dead workers with the same identity whose pids are gone). Empty:
    hostname + kernel boot id + pid namespace. A value set here must be held by one
    live container or machine at a time, on one kernel (the Helm chart sets the pod's
    uid, so that a restarted container recovers the work of its predecessor)."""
    recovery_interval: float = 3.0
    """Seconds between the leader's checks for dead runners and due invocations."""
    schedule_interval: float = 1.0
    """Seconds between the leader's releases of due scheduled invocations and retries
    (shorter holds are released at their due time by the process that made them)."""
    max_recoveries: int = 3
    """Runs lost to dead workers an invocation may have before it fails instead."""
    runner_retention: float = 86400.0
    """Seconds heartbeat records of stopped or dead runners are kept."""
    lease_ttl: float = 9.0
    """Seconds a leader lease lasts without renewal."""
    pending_timeout: float = 1800.0
    """Seconds after which recovery publishes a PENDING invocation again if no publish
    of it was ever confirmed (its producer died first); a queued backlog is never
    republished."""
    shutdown_grace: float = 30.0
    """Seconds running tasks get to finish after SIGTERM."""
    trigger_grace: float = 60.0
    """Seconds after which the leader submits again a trigger firing recorded but never
    settled (its process died while submitting), and how far behind it re-evaluates the
    outcomes of watched tasks (a process died before evaluating them)."""
    max_retries: int = 0
    """Default retries of a failed invocation (see the task option)."""
    retry_backoff: float = 1.0
    """Base delay of the exponential retry backoff, in seconds."""
    retry_backoff_max: float = 600.0
    """Upper bound of one retry delay, in seconds."""
    large_value_threshold: int = 1_000_000
    """Encoded arguments or results above this many bytes are stored once, by hash."""
    retention: float = 7 * 86400.0
    """Seconds finished invocations are kept (then the leader deletes them, with large
    values nothing refers to any more); 0 keeps them forever."""
    max_tasks_per_child: int = 0
    """Recycle a worker process after this many invocations; 0 never."""
    max_memory_per_child: int = 0
    """Recycle a worker process above this resident size in MiB; 0 never."""
    log_format: str = "text"
    """Worker log format: text or json."""
    log_level: str = "INFO"
    """Worker log level."""
    health_dir: str = ""
    """Folder where `fleet worker` keeps its health files (supervisor heartbeat, consumer
    state per process) for `fleet probe live|ready`; empty: none are written."""
    monitor_token: str = ""
    """Bearer token `fleet monitor` requires (secret; use FLEET__MONITOR_TOKEN_FILE)."""
    monitor_auth: str = ""
    """`user:password` for HTTP basic auth on `fleet monitor` (secret; or a _FILE)."""
    metrics: bool = False
    """Count and time invocations as Prometheus metrics (extra [metrics]; see
    `fleet.monitor.metrics`). `fleet worker --metrics-port` turns it on."""
    metrics_port: int = 0
    """Port of the `/metrics` endpoint a worker supervisor serves (0: none)."""
    metrics_host: str = "0.0.0.0"
    """Address the `/metrics` endpoint listens on (all interfaces: Prometheus scrapes pods)."""
    tracing: bool = False
    """OpenTelemetry spans for publishing and running invocations, linked by a W3C
    `traceparent` header (extra [otel]; see `fleet.monitor.tracing`)."""
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-task option overrides, keyed by task name."""


SECRETS = frozenset(
    {"monitor_token", "monitor_auth", "broker_password", "state_password", "signing_keys"}
)
"""Settings never shown (`fleet config show`, the monitor)."""

FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = typing.get_type_hints(Settings)


@dataclass(frozen=True)
class LoadedSettings:
    """Settings plus the source of every value (for `fleet config show`)."""

    settings: Settings
    sources: Mapping[str, str]


def coerce(key: str, value: Any, source: str) -> Any:
    """Check `value` against the type of setting `key`; strings from env are parsed."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown setting {key!r} (from {source}){hint}")
    return coerce_value(key, _HINTS[key], value, source)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedSettings:
    """Load settings from every source; see the module docstring for the order."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    root = project_root(cwd)
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(FIELDS, "default")
    bases: dict[str, Path] = {}
    """Folder each path setting is relative to: that of the file that set it, or root."""

    def layer(items: Mapping[str, Any], source: str, base: Path = root) -> None:
        for key, value in items.items():
            if key == "tasks" and key in values:
                values[key] = _merge_tasks(values[key], coerce(key, value, source))
            else:
                values[key] = coerce(key, value, source)
            sources[key] = source
            bases[key] = base

    section, source = from_pyproject(cwd)
    layer(section, source, root)  # the pyproject found is the root's
    env = from_env(environ, FIELDS)
    overrides = dict(overrides or {})
    config_path, config_origin = values.get("config", ""), sources["config"]
    config_base = bases.get("config", root)
    if "config" in env:
        config_path, config_origin = env["config"]
        config_base = root
    if "config" in overrides:
        config_path, config_origin = str(overrides["config"]), "Fleet(config=...)"
        config_base = root
    if config_path:
        path = Path(resolve_path("config", config_path, config_base))
        data, source = from_yaml(str(path), config_origin)
        layer(data, source, path.parent)
    for key, (value, origin) in env.items():
        layer({key: value}, origin)
    for key, value in overrides.items():
        layer({key: value}, f"Fleet({key}=...)")
    if not values.get("queues_file") and (root / "configs" / "queues.yaml").is_file():
        values["queues_file"] = "configs/queues.yaml"
        sources["queues_file"] = "default (configs/queues.yaml exists)"
    for setting in ("broker_url", "state_url"):
        kind = setting[: -len("_url")]
        user, password = values.get(f"{kind}_username", ""), values.get(f"{kind}_password", "")
        if user or password:
            url = values.get(setting, FIELDS[setting].default)
            values[setting] = with_credentials(url, user, password, kind)
            sources[setting] += f"; credentials from {kind}_username / {kind}_password"
    for key in PATH_KEYS:
        given = values.get(key, FIELDS[key].default)
        resolved = resolve_path(key, given, bases.get(key, root))
        if resolved != given:
            values[key] = resolved
            sources[key] += f"; relative to {bases.get(key, root)}"
    check_together({k: values.get(k, f.default) for k, f in FIELDS.items()}, sources)
    return LoadedSettings(Settings(**values), sources)


def _merge_tasks(
    lower: Mapping[str, Mapping[str, Any]], upper: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    merged = {name: dict(opts) for name, opts in lower.items()}
    for name, opts in upper.items():
        merged.setdefault(name, {}).update(opts)
    return merged


def describe(loaded: LoadedSettings) -> str:
    """Render the effective settings and their sources (`fleet config show`)."""
    from fleet._urls import redact

    width = max(len(k) for k in FIELDS)
    lines = []
    for key in FIELDS:
        value = getattr(loaded.settings, key)
        shown = redact(value) if key.endswith("_url") else value
        if key == "signing_keys" and value:
            shown = _key_ids(value)
        elif key in SECRETS and value:
            shown = "***"
        shown = dict(shown) if isinstance(shown, Mapping) else shown
        lines.append(f"{key:<{width}}  {shown!r:<40}  # {loaded.sources[key]}")
    return "\n".join(lines)


def _key_ids(value: str) -> str:
    """`signing_keys` as `fleet config show` prints it: the key ids, never the secrets."""
    from fleet.signing import parse_keys

    return "keys " + ", ".join(parse_keys(value).keys) + " (secrets hidden)"
