"""Backend URLs: pick an implementation by scheme, and make URLs safe to log.

Job: map the scheme of `broker_url` / `state_url` to a class through an explicit table,
importing it only when used, and strip credentials before a URL reaches a log line or
an error message. A missing optional dependency is reported with the extra to install.

Contract: `redact` never raises and never returns a secret of the URL it was given
(password, secret query values, fragment), whatever the text; `password_of` and
`secrets_of` find the same secrets, so that drivers' messages can be `scrub`bed.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

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


_HOSTS = re.compile(r"[^/?#@&=;\s]*")
"""What may follow the '@' that ends the credentials: host names (IDN too), IPv4,
[IPv6], ports, commas between hosts (MongoDB seed lists); never query text."""
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "key", "credential", "sig")
_SECRET_KEYS = ("authmechanismproperties",)
"""Query keys whose values are secret: any key containing one of `_SECRET_WORDS`, and
these whole keys (MongoDB puts AWS session tokens in `authMechanismProperties`)."""


def _split(url: str) -> tuple[str, str | None, str, str]:
    """(`scheme://`, credentials or None, hosts, the rest: path, query and fragment).

    Built for URLs that are not quite URLs: a password may hold unencoded `/ ? # @ :`,
    and `host:1,host:2` seed lists or `[::1]` are allowed. The credentials end at the
    last '@' that is followed by something shaped like hosts, so a password can never
    leak into what is taken for the host (at worst too much is taken as credentials).
    When no '@' is followed by hosts, everything after `scheme://` is credentials.
    """
    scheme, sep, rest = url.partition("://")
    prefix = scheme + sep if sep else ""
    if not sep:
        rest = url
    userinfo: str | None = None
    ats = [i for i, ch in enumerate(rest) if ch == "@"]
    if ats:
        end = None
        for i in reversed(ats):
            segment = re.match(r"[^/?#]*", rest[i + 1 :])
            if segment is not None and _HOSTS.fullmatch(segment.group()):
                end = i
                break
        if end is None:  # no hosts after any '@': nothing can be shown safely
            return prefix, rest, "", ""
        userinfo, rest = rest[:end], rest[end + 1 :]
    hosts = re.match(r"[^/?#]*", rest)
    host_text = hosts.group() if hosts is not None else ""
    return prefix, userinfo, host_text, rest[len(host_text) :]


def _secret_key(key: str) -> bool:
    name = unquote(key).strip().lower()
    # A key read from text that is not quite a URL may carry what came before it
    # ('/?authMechanismProperties'): the part after its last '?' counts as the key too.
    whole = {name, name.rpartition("?")[2]}
    return bool(whole & set(_SECRET_KEYS)) or any(word in name for word in _SECRET_WORDS)


def _redact_tail(tail: str, in_query: bool = False) -> str:
    """Path, query and fragment with the values of secret query keys replaced.

    `in_query`: a query began in the credentials, so the tail may be the rest of it
    (all of it: a '?' in there is one more unencoded character of a value).
    """
    tail, hash_, fragment = tail.partition("#")
    path, mark, query = tail.partition("?")
    if in_query:
        path, query, mark = "", tail, ""
    parts: list[str] = []
    hiding = in_query
    for part in re.split(r"([&;])", query) if mark or in_query else []:
        if part in ("&", ";"):
            parts.append(part)
            continue
        key, eq, _ = part.partition("=")
        if eq:
            hiding = _secret_key(key)
            parts.append(f"{key}=***" if hiding else part)
        else:  # after a secret, a part without '=' is an unencoded '&' inside its value
            parts.append("***" if hiding else part)
    return path + mark + "".join(parts) + (hash_ + "***" if fragment else hash_)


def redact(url: str) -> str:
    """Return `url` with its secrets replaced by '***' (safe for logs and errors).

    The password, the values of query keys that hold secrets (any key containing
    password, secret, token, key, ...; `authMechanismProperties`) and any fragment are
    hidden. Never raises, whatever the text: multi-host and IPv6 URLs, `+srv`, and
    passwords with unencoded `/ ? # @` included.
    """
    try:
        prefix, userinfo, hosts, tail = _split(str(url))
        if userinfo is not None and userinfo == str(url)[len(prefix) :]:
            return prefix + "***"  # no hosts found after the credentials: hide it all
        shown = ""
        if userinfo is not None:
            user, colon, _ = userinfo.partition(":")
            if re.search(r"[/?#&=;]", user):  # not a user name: a secret may hide in it
                user, colon = "", ":"
            shown = (f"{user}:***@" if user else "***@") if colon else f"{user}@"
        # A '?' then a '=' in what was taken for credentials: a query began before the
        # last '@', and the tail may be the rest of it.
        in_query = userinfo is not None and "=" in userinfo.partition("?")[2]
        return prefix + shown + hosts + _redact_tail(tail, in_query)
    except Exception:  # pragma: no cover - the parsing above cannot fail; this is a vow
        return "<unparseable url>"


def host_part(url: str) -> str:
    """The hosts of `url` as written ('a:1,b:2', '[::1]:5672'), never its credentials."""
    return _split(url)[2]


def with_first_host(url: str) -> str:
    """`url` with only the first host of a comma-separated host list (for parsers that
    take one host); unchanged when it names one host."""
    prefix, userinfo, hosts, tail = _split(url)
    if "," not in hosts:
        return url
    creds = "" if userinfo is None else userinfo + "@"
    return prefix + creds + hosts.split(",", 1)[0] + tail


def password_of(url: str) -> str:
    """The password in `url`, percent-decoded ('' when none); what error texts must hide."""
    userinfo = _split(url)[1]
    if userinfo is None or ":" not in userinfo:
        return ""
    return unquote(userinfo.partition(":")[2])


def secrets_of(url: str) -> tuple[str, ...]:
    """Every secret in `url` as it may appear in a driver's message: the password and
    the values of secret query keys, raw and percent-decoded (longest first)."""
    _, userinfo, _, tail = _split(url)
    found: set[str] = set()
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        if re.search(r"[/?#&=;]", user):  # as `redact` shows it: all of it is hidden
            found.add(userinfo)
        elif colon:
            found.add(password)
    # The query as written after the hosts, and as a plain parser would cut it (an '@'
    # in the query may have been taken for the end of the credentials).
    for query in (tail.partition("#")[0].partition("?")[2], url.partition("?")[2]):
        for part in re.split(r"[&;#]", query):
            key, eq, value = part.partition("=")
            if eq and _secret_key(key):
                found.add(value)
    found |= {unquote(s) for s in found}
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret (raw and percent-encoded) replaced by '***'."""
    for secret in secrets:
        if secret:
            for form in dict.fromkeys((secret, quote(secret, safe=""), quote(secret))):
                text = text.replace(form, "***")
    return text


def with_credentials(url: str, username: str, password: str, kind: str) -> str:
    """`url` with its user and password replaced by `username` / `password` (percent-
    encoded): how the separate keys of operator-made Secrets (RabbitMQ's cluster
    operator, MongoDB charts) become one URL. A part left empty keeps the URL's own.
    `kind` is "broker" or "state". Raises `ConfigError` for a URL that carries no host
    (sqlite://, memory://)."""
    if not (username or password):
        return url
    prefix, userinfo, hosts, tail = _split(url)
    if not prefix or not hosts or scheme_of(url) in ("sqlite", "memory"):
        raise ConfigError(
            f"{kind}_username / {kind}_password given, but {kind}_url {redact(url)!r} "
            "is not a network URL to put them in"
        )
    old_user, _, old_password = (userinfo or "").partition(":")
    user = quote(username, safe="") if username else old_user
    secret = quote(password, safe="") if password else old_password
    if not user:
        raise ConfigError(f"{kind}_password given without a user name for {redact(url)!r}")
    credentials = f"{user}:{secret}" if secret else user
    return f"{prefix}{credentials}@{hosts}{tail}"
