"""Finding the `HistoryStore` that lives with a state store.

Job: `history_store(state)`: the same file for SQLite, the same database for MongoDB,
the same shared data for `memory://name` (a private `memory://` store gets its own).
A state store that implements `HistoryStore` itself is returned as is; anything else
is a `ConfigError`. One instance per state store (weakly keyed).
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any

from fleet.errors import ConfigError
from fleet.workflows._history import HistoryStore

_lock = threading.Lock()
_by_name: dict[str, HistoryStore] = {}
_by_store: weakref.WeakKeyDictionary[object, HistoryStore] = weakref.WeakKeyDictionary()


def history_store(state: object) -> HistoryStore:
    """See the module docstring."""
    if isinstance(state, HistoryStore):
        return state
    from fleet.state.memory import MemoryStateStore
    from fleet.state.sqlite import SQLiteStateStore

    with _lock:
        found = _by_store.get(state)
        if found is not None:
            return found
        if isinstance(state, MemoryStateStore):
            from fleet.workflows._memory import MemoryHistoryStore

            name = state.url.partition("://")[2]
            store: HistoryStore = MemoryHistoryStore()
            if name:
                store = _by_name.setdefault(name, store)
        elif isinstance(state, SQLiteStateStore):
            from fleet.workflows._sqlite import SQLiteHistoryStore

            store = SQLiteHistoryStore(state.db)
        elif _is_mongo(state):
            from fleet.workflows._mongo import MongoHistoryStore

            mongo: Any = state
            store = MongoHistoryStore(mongo.database, mongo.options.prefix)
        else:
            raise ConfigError(f"state store {state!r} does not keep workflow histories")
        _by_store[state] = store
        return store


def _is_mongo(state: object) -> bool:
    # Only a loaded module can have made `state`: importing it here would import pymongo.
    module = sys.modules.get("fleet.state.mongo")
    return module is not None and isinstance(state, module.MongoStateStore)


def drop(name: str) -> None:
    """Forget the histories kept for `memory://name` (with `fleet.state.memory.drop`)."""
    with _lock:
        _by_name.pop(name, None)
