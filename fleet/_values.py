"""Large values: stored once in the state store, by content hash, and referenced.

Job: keep big encoded arguments and results out of messages, notifications and
invocation records. Contract: `externalize` returns the data itself when it is at most
`threshold` bytes, else stores it under its blake2b hash (once, shared by every
invocation with the same value) and returns a short reference; `resolve` turns either
form back into the data. References start with byte 0xC1, which begins no msgpack, JSON
or pickle document, so they cannot be mistaken for a value (`fleet.state.BLOB_MARK`: the
stores know the form, to collect blobs nothing refers to any more).
"""

from __future__ import annotations

import hashlib

from fleet.errors import StateError
from fleet.state import BLOB_MARK as _MARK
from fleet.state import StateStore, blob_reference


def is_reference(data: bytes) -> bool:
    return data.startswith(_MARK)


def externalize(store: StateStore, data: bytes, threshold: int) -> bytes:
    if threshold <= 0 or len(data) <= threshold:
        return data
    key = hashlib.blake2b(data, digest_size=20).hexdigest()
    store.put_blobs([(key, data)])
    return blob_reference(key)


def resolve(store: StateStore, data: bytes) -> bytes:
    if not data.startswith(_MARK):
        return data
    key = data[len(_MARK) :].decode()
    value = store.get_blob(key)
    if value is None:
        raise StateError(f"large value {key} is missing from the state store")
    return value
