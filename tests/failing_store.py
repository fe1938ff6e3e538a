"""A state store that fails on demand, over a real one (no mocked backend).

`FailingStore(real)` forwards every call to `real`, except the `apply` calls that carry
a change matching `fail_when`: those raise `StateError` (the store "is down" for them)
as long as `failures` allows, and the `find` calls while `fail_find` is set (reads
"down"). Tests install it as `app.runtime().state` before a worker
starts, so the worker's executor and committer write through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from fleet.errors import StateError
from fleet.state import Change, Expired, InvocationRecord, Query, RunnerRecord, StateStore
from fleet.status import Status


class FailingStore(StateStore):
    def __init__(self, real: StateStore) -> None:
        self.real = real
        self.url = real.url
        self.fail_when: Callable[[Change], bool] = lambda change: False
        self.failures = -1
        """How many more calls to fail (-1: no limit)."""
        self.failed = 0
        self.fail_find = False
        """Whether `find` raises `StateError` (a read of the store fails)."""
        self._lock = threading.Lock()

    def apply(self, changes: Sequence[Change], at: float | None = None) -> list[bool]:
        with self._lock:
            if self.failures != 0 and any(self.fail_when(c) for c in changes):
                self.failures -= 1 if self.failures > 0 else 0
                self.failed += 1
                raise StateError("state store down (FailingStore)")
        return self.real.apply(changes, at)

    def register(self, records: Sequence[InvocationRecord]) -> None:
        self.real.register(records)

    def expire(self, before: float, limit: int = 1000) -> Expired:
        return self.real.expire(before, limit)

    def clear_due(self, ids: Sequence[str]) -> None:
        self.real.clear_due(ids)

    def get(self, ids: Sequence[str]) -> list[InvocationRecord]:
        return self.real.get(ids)

    def find(self, query: Query) -> list[InvocationRecord]:
        if self.fail_find:
            raise StateError("state store down for reads (FailingStore)")
        return self.real.find(query)

    def counts(self) -> dict[Status, int]:
        return self.real.counts()

    def purge(self) -> int:
        return self.real.purge()

    def beat(self, runners: Sequence[RunnerRecord]) -> None:
        self.real.beat(runners)

    def runners(self) -> list[RunnerRecord]:
        return self.real.runners()

    def forget_runners(self, before: float) -> int:
        return self.real.forget_runners(before)

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        return self.real.lease(name, holder, ttl)

    def release(self, name: str, holder: str) -> None:
        self.real.release(name, holder)

    def put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        self.real.put_blobs(blobs)

    def get_blob(self, key: str) -> bytes | None:
        return self.real.get_blob(key)

    def close(self) -> None:
        self.real.close()
