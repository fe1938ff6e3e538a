"""The in-memory state store: one process, no I/O, for tests and inline mode.

Job: implement the `StateStore` contract with dicts behind one lock, exactly as the
SQLite store behaves (same ordering, same errors), so tests on it mean something.

Contract, beyond `fleet.state`:
- `memory://name` stores in one process share their data (a module registry keyed by
  name; `drop(name)` forgets one); `memory://` is a private, fresh store.
- Records are immutable; `apply` replaces them, so `get` can hand out the stored
  objects themselves.
- `find` returns matches ordered by `created`, then registration order.
- No options: any keyword option raises ConfigError.
- Trigger definitions and firings live in the same shared data (`fleet.triggers._memory`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from fleet.errors import ConfigError, DuplicateInvocationError, StateError
from fleet.state import (
    BLOB_GRACE,
    Change,
    Expired,
    InvocationRecord,
    Query,
    RunnerRecord,
    StateStore,
    blob_key,
)
from fleet.state._common import matches
from fleet.status import FINAL, HistoryEntry, Status
from fleet.triggers._memory import MemoryTriggers, TriggerTables

_registry: dict[str, _Data] = {}
_registry_lock = threading.Lock()


def drop(name: str) -> None:
    """Forget the shared data of `memory://name` (stores still open keep theirs)."""
    with _registry_lock:
        _registry.pop(name, None)


@dataclass
class _Data:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: dict[str, InvocationRecord] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)
    runners: dict[str, RunnerRecord] = field(default_factory=dict)
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)
    """When each blob was last stored."""
    seq: itertools.count[int] = field(default_factory=itertools.count)
    triggers: TriggerTables = field(default_factory=TriggerTables)


class MemoryStateStore(StateStore, MemoryTriggers):
    """See the module docstring."""

    def __init__(self, url: str = "memory://", **options: object) -> None:
        if options:
            raise ConfigError(f"MemoryStateStore: unknown option(s) {sorted(options)}; known: []")
        scheme, sep, name = url.partition("://")
        if scheme.lower() != "memory" or not sep or "/" in name:
            raise ConfigError(f"state_url {url!r}: expected memory:// or memory://name")
        self.url = url
        if name:
            with _registry_lock:
                data = _registry.get(name)
                if data is None:
                    data = _registry[name] = _Data()
        else:
            data = _Data()
        self._data = data

    def register(self, records: Sequence[InvocationRecord]) -> None:
        d = self._data
        with d.lock:
            seen: set[str] = set()
            for record in records:
                if not isinstance(record, InvocationRecord):
                    raise StateError(f"register takes InvocationRecord objects, got {record!r}")
                if record.id in d.records or record.id in seen:
                    raise DuplicateInvocationError(
                        f"invocation id {record.id!r} is already registered"
                    )
                seen.add(record.id)
            for record in records:
                d.records[record.id] = record
                d.order[record.id] = next(d.seq)

    def apply(self, changes: Sequence[Change], at: float | None = None) -> list[bool]:
        when = time.time() if at is None else at
        d = self._data
        out: list[bool] = []
        with d.lock:
            for change in changes:
                rec = d.records.get(change.id)
                ok = (
                    rec is not None
                    and rec.status in change.expect
                    and (change.expect_owner is None or rec.owner == change.expect_owner)
                )
                if ok and rec is not None:
                    d.records[change.id] = replace(
                        rec,
                        status=change.to,
                        owner=change.owner,
                        result=rec.result if change.result is None else change.result,
                        error=rec.error if change.error is None else change.error,
                        due=rec.due if change.due is None else change.due,
                        waits_on=tuple(change.waits_on) if change.to is Status.PAUSED else (),
                        attempt=rec.attempt + change.count_attempt - change.refund_attempt,
                        updated=when,
                        history=(
                            *rec.history,
                            HistoryEntry(change.to, when, change.by, change.note),
                        ),
                    )
                out.append(ok)
        return out

    def clear_due(self, ids: Sequence[str]) -> None:
        d = self._data
        with d.lock:
            for invocation_id in ids:
                rec = d.records.get(invocation_id)
                if rec is not None and rec.status is Status.PENDING and rec.due is not None:
                    d.records[invocation_id] = replace(rec, due=None)

    def get(self, ids: Sequence[str]) -> list[InvocationRecord]:
        with self._data.lock:
            records = self._data.records
            return [records[i] for i in ids if i in records]

    def find(self, query: Query) -> list[InvocationRecord]:
        d = self._data
        if query.limit <= 0:
            return []
        with d.lock:
            found = [r for r in d.records.values() if matches(r, query)]
            found.sort(key=lambda r: (r.created, d.order[r.id]))
        return found[: query.limit]

    def counts(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        with self._data.lock:
            for record in self._data.records.values():
                counts[record.status] += 1
        return counts

    def purge(self) -> int:
        d = self._data
        with d.lock:
            n = len(d.records)
            d.records.clear()
            d.order.clear()
            return n

    def beat(self, runners: Sequence[RunnerRecord]) -> None:
        with self._data.lock:
            for runner in runners:
                self._data.runners[runner.id] = runner

    def runners(self) -> list[RunnerRecord]:
        with self._data.lock:
            return [self._data.runners[k] for k in sorted(self._data.runners)]

    def forget_runners(self, before: float) -> int:
        with self._data.lock:
            old = [k for k, r in self._data.runners.items() if r.beat < before]
            for key in old:
                del self._data.runners[key]
            return len(old)

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        if not holder:
            raise StateError(f"lease {name!r} needs a holder")
        now = time.time()
        with self._data.lock:
            current = self._data.leases.get(name)
            if current is None or current[0] == holder or current[1] <= now:
                self._data.leases[name] = (holder, now + ttl)
                return True
            return False

    def release(self, name: str, holder: str) -> None:
        with self._data.lock:
            current = self._data.leases.get(name)
            if current is not None and current[0] == holder:
                del self._data.leases[name]

    def put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        now = time.time()
        with self._data.lock:
            for key, data in blobs:
                self._data.blobs.setdefault(key, bytes(data))
                self._data.stored[key] = now

    def get_blob(self, key: str) -> bytes | None:
        with self._data.lock:
            return self._data.blobs.get(key)

    def expire(self, before: float, limit: int = 1000) -> Expired:
        d = self._data
        with d.lock:
            old = sorted(
                (r for r in d.records.values() if r.status in FINAL and r.updated < before),
                key=lambda r: (r.updated, d.order[r.id]),
            )[: max(limit, 0)]
            for record in old:
                del d.records[record.id], d.order[record.id]
            used = {blob_key(r.args) for r in d.records.values()}
            used |= {blob_key(r.result) for r in d.records.values()}
            cutoff = before - BLOB_GRACE
            unused = [k for k, at in d.stored.items() if at < cutoff and k not in used]
            for key in unused[: max(limit, 0)]:
                del d.blobs[key], d.stored[key]
        return Expired(len(old), min(len(unused), max(limit, 0)))

    def close(self) -> None:
        pass

    def _trigger_home(self) -> tuple[threading.Lock, TriggerTables]:
        return self._data.lock, self._data.triggers
