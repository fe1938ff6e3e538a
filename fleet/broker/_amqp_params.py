"""Connection settings of the RabbitMQ broker, from `broker_url` and keyword options.

Job: turn `amqp://user:pass@host:port/vhost?query` (or `amqps://`) into pika
`ConnectionParameters` plus fleet's own options, and keep credentials out of every
string that could reach a log line or an error message.

Contract:
- Several hosts (the nodes of a RabbitMQ cluster) are separated by commas:
  `amqp://user:pass@h1:5672,h2:5672,h3/vhost`; a host without a port takes the
  scheme's default, `[::1]:5672` is an IPv6 host. Every host shares the credentials,
  vhost and query. `Endpoint.candidates()` lists them for one connection attempt, the
  host that last worked first, then the others in URL order (`Endpoint.worked` /
  `Endpoint.failed` move the preference), so that every connection of a process
  (publishers, consumers, the admin) fails over to another node by itself.
  `failing_over(t)` says a host of several failed less than `t` seconds ago (the
  publisher then keeps retrying nacks: quorum queues nack while electing a leader).
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
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import pika

from fleet._urls import host_part, password_of, redact, with_first_host
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


class _Preference:
    """Index of the host that last worked (shared by the copies of one Endpoint)."""

    def __init__(self) -> None:
        self.index = 0
        self.lost_at = float("-inf")
        """`time.monotonic()` when a host last failed (a failover may be under way)."""
        self.lock = threading.Lock()


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, plus fleet's options. `url` is redacted."""

    url: str
    params: pika.ConnectionParameters
    """The first host's parameters (every host shares all but host and port)."""
    options: Options
    secret: str
    """The password ('' when none): what `scrub` removes."""
    hosts: tuple[tuple[str, int], ...] = ()
    """(host, port) of every node, in URL order; empty means `params`' host only."""
    _preferred: _Preference = field(default_factory=_Preference, compare=False, repr=False)

    def scrub(self, text: str) -> str:
        return scrub(text, self.secret)

    def candidates(self) -> list[tuple[str, int]]:
        """The hosts to try, the one that last worked first (see the module doc)."""
        hosts = list(self.hosts) or [(self.params.host, self.params.port)]
        first = self._preferred.index % len(hosts)
        return hosts[first:] + hosts[:first]

    def worked(self, host: tuple[str, int]) -> None:
        """A connection to `host` opened: try it first next time."""
        hosts = list(self.hosts)
        if host in hosts:
            with self._preferred.lock:
                self._preferred.index = hosts.index(host)

    def failed(self, host: tuple[str, int]) -> None:
        """`host` was lost or refused: prefer the next one, if it is still the first."""
        hosts = list(self.hosts)
        self._preferred.lost_at = time.monotonic()
        if len(hosts) > 1 and host in hosts:
            with self._preferred.lock:
                if self._preferred.index % len(hosts) == hosts.index(host):
                    self._preferred.index = (hosts.index(host) + 1) % len(hosts)

    def failing_over(self, within: float) -> bool:
        """Whether a host failed less than `within` seconds ago: on a cluster, the
        queues it led elect new leaders meanwhile and may nack publishes. Always False
        for a single host (no other node to elect a leader on)."""
        return bool(self.hosts) and time.monotonic() - self._preferred.lost_at < within

    def with_name(
        self, name: str, host: tuple[str, int] | None = None
    ) -> pika.ConnectionParameters:
        """Parameters whose client properties name the connection (visible to operators),
        for `host` (default the first)."""
        params = self.params
        where = host or (params.host, params.port)
        ssl_options = params.ssl_options
        if (
            ssl_options is not None
            and host is not None
            and where[0] != params.host
            and ssl_options.server_hostname == params.host  # SNI follows the host
        ):
            ssl_options = pika.SSLOptions(ssl_options.context, where[0])
        named = pika.ConnectionParameters(
            host=where[0],
            port=where[1],
            virtual_host=params.virtual_host,
            credentials=params.credentials,
            heartbeat=params.heartbeat,
            channel_max=params.channel_max,
            frame_max=params.frame_max,
            locale=params.locale,
            blocked_connection_timeout=params.blocked_connection_timeout,
            socket_timeout=params.socket_timeout,
            stack_timeout=params.stack_timeout,
            ssl_options=ssl_options,
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
    listed = host_part(url)
    url = with_first_host(url)  # a cluster: the first host stands for all in urlsplit
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: {scrub(str(exc), secret)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps"):
        raise ConfigError(f"{where}: expected amqp:// or amqps://")
    default_port = 5671 if scheme == "amqps" else 5672
    hosts: tuple[tuple[str, int], ...] = ()
    if "," in listed:
        hosts = tuple(_host(entry, default_port, where) for entry in listed.split(","))
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
            port=port or default_port,
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
    return Endpoint(safe, params, opts, secret, hosts)


def _host(entry: str, default_port: int, where: str) -> tuple[str, int]:
    """(host, port) of one comma-separated entry of the URL's host list."""
    try:
        parts = urlsplit(f"amqp://{entry}")
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: host {entry!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"{where}: empty host in the host list {entry!r}")
    return parts.hostname, port or default_port


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
