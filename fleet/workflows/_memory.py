"""`HistoryStore` in memory, for tests and the memory state store.

Job: the store's contract (`fleet.workflows._history`) over dicts under one lock.
"""

from __future__ import annotations

import threading

from fleet.workflows._history import Event, HistoryConflictError, HistoryStore


class MemoryHistoryStore(HistoryStore):
    """See `fleet.workflows._history.HistoryStore`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, list[Event]] = {}
        self._members: dict[str, str] = {}
        self._data: dict[str, dict[str, bytes]] = {}
        self._signals: dict[tuple[str, str], list[bytes]] = {}

    def load(self, history: str) -> list[Event]:
        with self._lock:
            return list(self._events.get(history, ()))

    def append(self, history: str, run: str, event: Event) -> None:
        with self._lock:
            events = self._events.setdefault(history, [])
            if event.seq != len(events):
                raise HistoryConflictError(
                    f"workflow history {history}: position {event.seq} is not the next "
                    f"one ({len(events)} recorded)"
                )
            events.append(event)
            if event.kind == "set":
                self._data.setdefault(run, {})[event.name] = event.data
            for invocation_id in event.ids:
                self._members[invocation_id] = run

    def run_of(self, invocation_id: str) -> str | None:
        with self._lock:
            return self._members.get(invocation_id)

    def set_data(self, run: str, key: str, value: bytes) -> None:
        with self._lock:
            self._data.setdefault(run, {})[key] = value

    def data(self, run: str) -> dict[str, bytes]:
        with self._lock:
            return dict(self._data.get(run, {}))

    def signal(self, run: str, name: str, payload: bytes) -> None:
        with self._lock:
            self._signals.setdefault((run, name), []).append(payload)

    def signals(self, run: str, name: str) -> list[bytes]:
        with self._lock:
            return list(self._signals.get((run, name), ()))
