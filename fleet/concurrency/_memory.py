"""`LimitStore` in memory: one process, for tests and inline mode.

Job: keep lines, rate logs and memos in dicts behind one lock.
Contract: every method holds the lock for its whole step, which makes it atomic among
the threads of the process; stores made for one `memory://name` state store share
their data (see `fleet.concurrency.limit_store`).
"""

from __future__ import annotations

import threading

from fleet.concurrency._options import RateLimit
from fleet.concurrency._store import Grant, LimitStore, Line, Memo, Permits, live, reserve


class MemoryLimitStore(LimitStore):
    """See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, Line] = {}
        self._logs: dict[str, list[float]] = {}
        self._memos: dict[str, Memo] = {}

    def acquire(
        self,
        key: str,
        holder: str,
        *,
        limit: int,
        now: float,
        ttl: float = 0.0,
        since: float | None = None,
    ) -> Grant:
        with self._lock:
            line = self._lines.setdefault(key, Line())
            grant = line.acquire(holder, limit, now, ttl, since)
            if line.empty:
                del self._lines[key]
            return grant

    def release(self, key: str, holder: str, *, now: float) -> tuple[str, ...]:
        with self._lock:
            line = self._lines.get(key)
            if line is None:
                return ()
            woken = line.release(holder, now)
            if line.empty:
                del self._lines[key]
            return woken

    def permits(self, key: str, *, now: float) -> Permits:
        with self._lock:
            line = self._lines.get(key)
            return line.permits(now) if line is not None else Permits()

    def take(self, key: str, rate: RateLimit, *, now: float) -> float:
        with self._lock:
            return reserve(self._logs.setdefault(key, []), rate, now)

    def remember(
        self, key: str, holder: str, *, now: float, ttl: float = 0.0, value: str = ""
    ) -> Memo:
        with self._lock:
            memo = live(self._memos.get(key), now)
            if memo is None:
                memo = Memo(key, holder, value, now, now + ttl if ttl else 0.0)
                self._memos[key] = memo
            return memo

    def recall(self, key: str, *, now: float) -> Memo | None:
        with self._lock:
            return live(self._memos.get(key), now)

    def forget(self, key: str, holder: str) -> bool:
        with self._lock:
            memo = self._memos.get(key)
            if memo is None or memo.holder != holder:
                return False
            del self._memos[key]
            return True

    def purge(self, *, now: float, rates_before: float) -> int:
        with self._lock:
            memos = [k for k, m in self._memos.items() if live(m, now) is None]
            logs = [k for k, log in self._logs.items() if not log or log[-1] < rates_before]
            for key in memos:
                del self._memos[key]
            for key in logs:
                del self._logs[key]
            return len(memos) + len(logs)
