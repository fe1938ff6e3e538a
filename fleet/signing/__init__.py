"""Message authenticity: HMAC signatures on every invocation message, with key rotation.

Job: let a worker trust that a message was published by someone holding one of the
fleet's signing keys, before it decodes a single byte of the body.

Contract:
- Keys come from the setting `signing_keys` (or `FLEET__SIGNING_KEYS_FILE`, a mounted
  file): entries `KEY_ID:SECRET`, separated by commas or newlines. The FIRST entry is the
  current key: producers sign with it. Every listed key is accepted by workers, so a key
  is rotated in three rollouts: add the new key second (accepted everywhere), move it
  first (signing), drop the old one. Key ids are `[A-Za-z0-9._-]`, secrets at least
  `MIN_SECRET` characters; anything else raises `ConfigError` naming the entry (never the
  secret).
- A signature is the header `HEADER` = `KEY_ID:HEX` where HEX is HMAC-SHA256 of the key
  over the message body. Bodies are signed, not queues or priorities: the broker moves
  a message between a queue, its urgent lane and its dead-letter queue unchanged.
- `Signer.check(message)` returns None for a message signed by a listed key, else the
  reason to dead-letter it: unsigned, malformed signature, unknown key id, or forged. It
  compares in constant time and reads the body only as bytes to hash.
- No keys configured: nothing is signed and every message is accepted (`NO_SIGNING`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleet.errors import ConfigError

HEADER = "fleet-signature"
"""Message header carrying `KEY_ID:HEX` (not `x-fleet-`: brokers strip those)."""
MIN_SECRET = 16
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Signer:
    """Signs with the current key, accepts any listed key."""

    current: str = ""
    """Id of the key that signs; "" when signing is off."""
    keys: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.current)

    def headers(self, body: bytes) -> dict[str, str]:
        """The headers that sign `body` (none when signing is off)."""
        if not self.current:
            return {}
        mac = hmac.new(self.keys[self.current], body, hashlib.sha256).hexdigest()
        return {HEADER: f"{self.current}:{mac}"}

    def check(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when `body` is signed by a listed key (or signing is off), else why not."""
        if not self.current:
            return None
        value = headers.get(HEADER)
        if value is None:
            return "unsigned message: this worker accepts only signed messages"
        if not isinstance(value, str):
            return f"malformed signature header {HEADER!r}"
        key_id, sep, given = value.partition(":")
        if not sep or not given:
            return f"malformed signature header {HEADER!r}"
        secret = self.keys.get(key_id)
        if secret is None:
            known = ", ".join(sorted(self.keys))
            return f"signed with unknown key id {key_id[:64]!r} (accepted: {known})"
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given.strip().lower()):
            return f"forged message: signature does not match key {key_id!r}"
        return None


NO_SIGNING = Signer()


@functools.lru_cache(maxsize=8)
def parse_keys(text: str) -> Signer:
    """The signer described by a `signing_keys` value (see the module docstring)."""
    entries = [e.strip() for e in re.split(r"[,\n]", text) if e.strip() and not e.startswith("#")]
    if not entries:
        return NO_SIGNING
    keys: dict[str, bytes] = {}
    for n, entry in enumerate(entries, 1):
        key_id, sep, secret = entry.partition(":")
        key_id, secret = key_id.strip(), secret.strip()
        if not sep or not _KEY_ID.match(key_id):
            raise ConfigError(
                f"signing_keys entry {n}: expected KEY_ID:SECRET with a key id of letters, "
                "digits, '.', '_' or '-'"
            )
        if len(secret) < MIN_SECRET:
            raise ConfigError(
                f"signing_keys entry {n} (key id {key_id!r}): the secret is shorter than "
                f"{MIN_SECRET} characters"
            )
        if key_id in keys:
            raise ConfigError(f"signing_keys: key id {key_id!r} is listed twice")
        keys[key_id] = secret.encode("utf-8")
    return Signer(next(iter(keys)), keys)


def signer(settings: object) -> Signer:
    """The signer of an app's settings (parsed once per distinct value)."""
    return parse_keys(str(getattr(settings, "signing_keys", "") or ""))


__all__ = ["HEADER", "MIN_SECRET", "NO_SIGNING", "Signer", "parse_keys", "signer"]
