"""Concurrency control: registration and running limits, idempotency keys, a result
cache and rate limits, enforced by the store so they hold across the fleet.

Job: the public surface of the capability: the option types (`Mode`, `Limit`,
`RateLimit`), the storage interface (`LimitStore` and its records), `limit_store` to
find the store beside a state store, `concurrency_key`, and `ConcurrencyExtension`
(the policy behind the hooks of `fleet.extensions`).

Contract:
- `limit_store(state)` returns the `LimitStore` that lives with a state store: the same
  file for SQLite, the same database for MongoDB, the same shared data for
  `memory://name` (a private `memory://` store gets one of its own). A state store that
  implements `LimitStore` itself is returned as is. Anything else: `ConfigError`.
- See `fleet.concurrency._store` for the store's contract, `_options` for the task
  options, `_key` for what makes calls equivalent and `_extension` for the decisions.
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

from fleet.concurrency._extension import ConcurrencyExtension
from fleet.concurrency._held import Held, held_by_task
from fleet.concurrency._key import concurrency_key
from fleet.concurrency._options import OPTIONS, Limit, Mode, Policy, RateLimit, policy_of
from fleet.concurrency._store import Grant, LimitStore, Memo, Permits
from fleet.errors import ConfigError

_lock = threading.Lock()
_by_name: dict[str, LimitStore] = {}
_by_store: weakref.WeakKeyDictionary[object, LimitStore] = weakref.WeakKeyDictionary()


def limit_store(state: object) -> LimitStore:
    """The `LimitStore` kept with `state` (see the module docstring).

    Raises:
        ConfigError: the state store's backend keeps no limits.
    """
    if isinstance(state, LimitStore):
        return state
    from fleet.state.memory import MemoryStateStore
    from fleet.state.sqlite import SQLiteStateStore

    with _lock:
        found = _by_store.get(state)
        if found is not None:
            return found
        if isinstance(state, MemoryStateStore):
            from fleet.concurrency._memory import MemoryLimitStore

            name = state.url.partition("://")[2]
            store: LimitStore = MemoryLimitStore()
            if name:
                store = _by_name.setdefault(name, store)
        elif isinstance(state, SQLiteStateStore):
            from fleet.concurrency._sqlite import SQLiteLimitStore

            store = SQLiteLimitStore(state.db)
        elif _is_mongo(state):
            from fleet.concurrency._mongo import MongoLimitStore

            mongo: Any = state
            store = MongoLimitStore(mongo.database, mongo.options.prefix)
        else:
            raise ConfigError(f"state store {state!r} does not keep concurrency limits")
        _by_store[state] = store
        return store


def _is_mongo(state: object) -> bool:
    # Only a loaded module can have made `state`: importing it here would import pymongo.
    module = sys.modules.get("fleet.state.mongo")
    return module is not None and isinstance(state, module.MongoStateStore)


def drop(name: str) -> None:
    """Forget the limits kept for `memory://name` (with `fleet.state.memory.drop`)."""
    with _lock:
        _by_name.pop(name, None)


__all__ = [
    "OPTIONS",
    "ConcurrencyExtension",
    "Grant",
    "Held",
    "Limit",
    "LimitStore",
    "Memo",
    "Mode",
    "Permits",
    "Policy",
    "RateLimit",
    "concurrency_key",
    "drop",
    "held_by_task",
    "limit_store",
    "policy_of",
]
