"""Connection settings of the RabbitMQ broker, from `broker_url` and keyword options.

Job: turn `amqp://user:pass@host:port/vhost?query` (or `amqps://`) into pika
`ConnectionParameters` plus fleet's own options, and keep credentials out of every
string that could reach a log line or an error message.

Contract:
- Credentials and vhost are percent-decoded (`%2F` is the vhost "/"; no path means "/").
- Query parameters, all optional (unknown ones raise `ConfigError` naming them):
  - AMQP: `heartbeat` (seconds, 0 = off, default 60), `channel_max`, `frame_max`,
    `locale`, `blocked_connection_timeout` (seconds).
  - TLS (`amqps://` only): `cafile` (alias `ca_certs`), `capath`, `certfile`, `keyfile`,
    `verify` (true/false, default true: the server certificate and host name are
    checked), `server_hostname` (name to check and send as SNI; default the host).
  - fleet: `publish_timeout`, `publish_retries`, `connect_timeout`, `handoff_after`,
    `pool_size`, `connect_retry` (see `Options`). The same names are accepted as
    keyword options; a value in the URL wins over a keyword (the URL is the more
    specific source).
- `scrub(text)` replaces the password (raw and percent-encoded) with `***`; every
  message the broker formats from foreign text (pika exceptions) goes through it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pika

from fleet._urls import host_part, password_of, redact
from fleet.errors import ConfigError

DEFAULT_HEARTBEAT = 60
_AMQP_INT = ("heartbeat", "channel_max", "frame_max")
_TLS = ("cafile", "ca_certs", "capath", "certfile", "keyfile", "verify", "server_hostname")
_TRUE = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS = {**_TRUE, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True, slots=True)
class Options:
    """fleet's own settings for one RabbitMQ broker."""

    publish_timeout: float = 10.0
    """Seconds an attempt may wait for a connection and then for confirm progress."""
    publish_retries: int = 3
    """Attempts at an unconfirmed publish before `PublishError`."""
    connect_timeout: float = 10.0
    """Seconds one connection attempt (TCP, TLS, AMQP handshake) may take."""
    handoff_after: float = 1.0
    """Seconds a prefetched message may wait unrequested before it is handed back."""
    pool_size: int = 8
    """Idle publisher connections kept open for reuse."""
    connect_retry: float = 0.0
    """Seconds to wait for RabbitMQ at start (the first use of the broker), retrying the
    connection with backoff; 0 fails at once."""


OPTION_NAMES = tuple(f.name for f in fields(Options))


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, plus fleet's options. `url` is redacted."""

    url: str
    params: pika.ConnectionParameters
    options: Options
    secret: str
    """The password ('' when none): what `scrub` removes."""

    def scrub(self, text: str) -> str:
        return scrub(text, self.secret)

    def with_name(self, name: str) -> pika.ConnectionParameters:
        """Parameters whose client properties name the connection (visible to operators)."""
        params = self.params
        named = pika.ConnectionParameters(
            host=params.host,
            port=params.port,
            virtual_host=params.virtual_host,
            credentials=params.credentials,
            heartbeat=params.heartbeat,
            channel_max=params.channel_max,
            frame_max=params.frame_max,
            locale=params.locale,
            blocked_connection_timeout=params.blocked_connection_timeout,
            socket_timeout=params.socket_timeout,
            stack_timeout=params.stack_timeout,
            ssl_options=params.ssl_options,
            connection_attempts=1,
            client_properties={"connection_name": name, "product": "fleet"},
        )
        return named


def scrub(text: str, secret: str) -> str:
    """`text` with `secret` (raw and percent-encoded) replaced by '***'."""
    if not secret:
        return text
    for form in {secret, quote(secret, safe=""), quote(secret)}:
        text = text.replace(form, "***")
    return text


def parse(url: str, options: Mapping[str, object]) -> Endpoint:
    """Build an `Endpoint` from `broker_url` and keyword options (see the module doc)."""
    safe = redact(url)
    where = f"broker_url {safe!r}"
    secret = password_of(url)
    if _misread(url):
        raise ConfigError(
            f"{where}: the user name or password holds an unencoded '/', '?', '#' or '@'; "
            "percent-encode it (urllib.parse.quote(password, safe=''))"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: {scrub(str(exc), secret)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps"):
        raise ConfigError(f"{where}: expected amqp:// or amqps://")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise ConfigError(
            f"RabbitMQBroker: unknown option(s) {sorted(unknown)}; known: {list(OPTION_NAMES)}"
        )
    merged = {**options, **{k: v for k, v in query.items() if k in OPTION_NAMES}}
    opts = _options(merged, where)
    known = (
        set(OPTION_NAMES) | set(_AMQP_INT) | set(_TLS) | {"locale", "blocked_connection_timeout"}
    )
    bad = set(query) - known
    if bad:
        raise ConfigError(
            f"{where}: unknown query parameter(s) {sorted(bad)}; known: {sorted(known)}"
        )
    tls = {k: query[k] for k in _TLS if k in query}
    if tls and scheme != "amqps":
        raise ConfigError(f"{where}: TLS parameters {sorted(tls)} need an amqps:// URL")
    amqp: dict[str, Any] = {}
    for key in _AMQP_INT:
        if key in query:
            amqp[key] = _number(int, key, query[key], where)
    if "blocked_connection_timeout" in query:
        amqp["blocked_connection_timeout"] = _number(
            float, "blocked_connection_timeout", query["blocked_connection_timeout"], where
        )
    if "locale" in query:
        amqp["locale"] = query["locale"]
    host = parts.hostname or "localhost"
    credentials = pika.PlainCredentials(
        unquote(parts.username or "guest"), secret if parts.username else "guest"
    )
    vhost = unquote(parts.path[1:].split("/")[0]) if len(parts.path) > 1 else "/"
    try:
        params = pika.ConnectionParameters(
            host=host,
            port=port or (5671 if scheme == "amqps" else 5672),
            virtual_host=vhost,
            credentials=credentials,
            heartbeat=amqp.pop("heartbeat", DEFAULT_HEARTBEAT),
            socket_timeout=opts.connect_timeout,
            stack_timeout=opts.connect_timeout,
            connection_attempts=1,
            ssl_options=_tls(tls, host, where) if scheme == "amqps" else None,
            **amqp,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {scrub(str(exc), secret)}") from None
    return Endpoint(safe, params, opts, secret)


def _misread(url: str) -> bool:
    """Whether the standard parser would take part of the credentials for the host."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return True
    return netloc.rpartition("@")[2] != host_part(url)


_AT_LEAST = {"publish_retries": 1, "pool_size": 0, "handoff_after": 0.0, "connect_retry": 0.0}
"""Lowest allowed value per option; the other options must be > 0."""


def _options(values: Mapping[str, object], where: str) -> Options:
    opts = Options()
    for key, raw in values.items():
        kind = type(getattr(opts, key))
        value = _number(kind, key, raw, where)
        low = _AT_LEAST.get(key)
        if (low is None and value <= 0) or (low is not None and value < low):
            bound = f">= {low}" if low is not None else "> 0"
            raise ConfigError(f"{where}: option {key} must be {bound}, got {raw!r}")
        opts = replace(opts, **{key: value})
    return opts


def _number(kind: type, key: str, raw: object, where: str) -> Any:
    if isinstance(raw, (int, float, str)) and not isinstance(raw, bool):
        try:
            return kind(raw)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {key} must be a number, got {raw!r}")


def _tls(query: Mapping[str, str], host: str, where: str) -> pika.SSLOptions:
    verify = _BOOLS.get(query.get("verify", "true").strip().lower())
    if verify is None:
        raise ConfigError(f"{where}: verify must be true or false, got {query['verify']!r}")
    try:
        context = ssl.create_default_context(
            cafile=query.get("cafile") or query.get("ca_certs"), capath=query.get("capath")
        )
        if "certfile" in query:
            context.load_cert_chain(query["certfile"], query.get("keyfile"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: TLS files cannot be loaded: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return pika.SSLOptions(context, query.get("server_hostname") or host)
