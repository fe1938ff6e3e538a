"""The state store interface: where invocations, runners and leases are recorded.

Job: keep the durable truth about every invocation (status, owner, history, arguments,
outcome), the heartbeats of runners, leader leases and large values.

Contract, for every implementation:
- `register` inserts new invocation records; ids are unique.
- `apply` performs each `Change` as one atomic compare-and-set: it succeeds only if the
  record is in one of `change.expect` (and owned by `change.expect_owner` when given),
  and in the same atomic step sets the new status, owner and fields and appends the
  history entry. It returns one bool per change, in order. No read-then-write: two
  claimers of one invocation can never both win, and the first commit of an outcome
  wins over any later one.
- History entries come back in the order they were applied.
- `clear_due` removes the deadline of PENDING invocations whose message the broker
  confirmed; only PENDING invocations with a due time past are republished by recovery.
- `lease` acquires or renews a named lease for `holder` until now + ttl, atomically;
  at most one holder has an unexpired lease at any time.
- Methods are thread-safe and safe across processes sharing the store.
- `expire(before, limit)` deletes at most `limit` final invocations last updated before
  `before`, and at most `limit` large values (blobs) that no invocation references and
  that were last stored more than `BLOB_GRACE` seconds before `before`. An invocation
  references a blob by an `args` or `result` of the form `blob_reference(key)`.
  `put_blobs` of an existing key refreshes its stored time when it is older than half
  of `BLOB_GRACE`, so a value stored for an invocation about to be registered (or
  committed) is never collected under it.

Backends are chosen by the scheme of `state_url` through the explicit table `BACKENDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import field
from typing import TYPE_CHECKING

from fleet._value_class import value_class
from fleet.errors import ConfigError
from fleet.status import OWNED, HistoryEntry, Status, check

if TYPE_CHECKING:
    from fleet.config import Settings


BLOB_MARK = b"\xc1fleet-blob:"
"""Start of an `args`/`result` that is a reference to a blob: byte 0xC1 begins no
msgpack, JSON or pickle document, so a reference cannot be mistaken for a value."""
BLOB_GRACE = 3600.0
"""Seconds a blob is kept after it was last stored even when nothing references it."""


def blob_reference(key: str) -> bytes:
    """The `args`/`result` bytes that stand for the blob `key`."""
    return BLOB_MARK + key.encode()


def blob_key(data: bytes | None) -> str | None:
    """The blob key that `data` refers to, or None when it is a value itself."""
    if data is None or not data.startswith(BLOB_MARK):
        return None
    return bytes(data[len(BLOB_MARK) :]).decode("utf-8", "replace")


@value_class
class Expired:
    """What one `StateStore.expire` call deleted."""

    invocations: int = 0
    blobs: int = 0


@value_class
class ErrorInfo:
    """An exception as it crosses processes."""

    type: str
    """Dotted name of the exception type, e.g. 'builtins.ValueError'."""
    message: str
    traceback: str = ""
    args: bytes | None = None
    """The exception's args, encoded with msgpack when they can be (to rebuild it)."""


@value_class
class InvocationRecord:
    """Everything the store knows about one invocation."""

    id: str
    task: str
    queue: str
    args: bytes
    """Encoded arguments (see `fleet.codec`)."""
    codec: str
    status: Status
    call_key: str = ""
    """Hash of task name and arguments: equal calls have equal keys."""
    owner: str = ""
    history: tuple[HistoryEntry, ...] = ()
    result: bytes | None = None
    error: ErrorInfo | None = None
    attempt: int = 0
    """Attempts started so far (claims)."""
    due: float | None = None
    """When a held invocation is released, or a pending one is checked by recovery."""
    parent: str = ""
    """The invocation that submitted this one, if any."""
    reply_to: str = ""
    """Notification address of the submitting process."""
    waits_on: tuple[str, ...] = ()
    """While PAUSED: the invocations it waits for."""
    created: float = 0.0
    updated: float = 0.0


@value_class
class Change:
    """One compare-and-set status change; see `StateStore.apply`."""

    id: str
    to: Status
    expect: frozenset[Status]
    by: str = ""
    """Who makes the change; becomes the owner when `to` is RUNNING or PAUSED."""
    expect_owner: str | None = None
    """Required current owner (None: any)."""
    note: str = ""
    result: bytes | None = None
    error: ErrorInfo | None = None
    due: float | None = None
    waits_on: tuple[str, ...] = ()
    count_attempt: bool = False
    """Increment `attempt` (a claim that starts a new attempt)."""
    refund_attempt: bool = False
    """Decrement `attempt`: the run it counted ended through no fault of its own (its
    process was replaced for another invocation's hard time limit), so it is not
    charged toward `max_recoveries`."""
    redrive: bool = False
    """An operator's re-drive (`fleet.status.REDRIVES`, e.g. FAILED -> PENDING)."""

    def __post_init__(self) -> None:
        for src in self.expect:
            check(src, self.to, redrive=self.redrive)
        if self.count_attempt and self.refund_attempt:
            raise ValueError("a change cannot both count and refund an attempt")
        if self.to in OWNED and not self.by:
            raise ValueError(f"a change to {self.to.value} needs `by` (the new owner)")

    @property
    def owner(self) -> str:
        """The owner after the change."""
        return self.by if self.to in OWNED else ""


@value_class
class Query:
    """A selection of invocations; every given field must match."""

    statuses: Collection[Status] = ()
    owners: Collection[str] | None = None
    not_owners: Collection[str] | None = None
    due_before: float | None = None
    updated_before: float | None = None
    updated_after: float | None = None
    """Last updated at or after this time (with `updated_before`: a time range)."""
    task: str | None = None
    limit: int = 1000


@value_class
class RunnerRecord:
    """A heartbeat: one supervisor or worker process, as it last reported itself."""

    id: str
    kind: str
    """'supervisor' or 'process'."""
    host: str
    pid: int
    beat: float
    """When it last reported, seconds since the epoch."""
    parent: str = ""
    """The supervisor of a worker process."""
    queues: tuple[str, ...] = ()
    in_hand: tuple[str, ...] = ()
    """Ids of the invocations it holds."""
    started: float = 0.0
    stopped: bool = False
    """True once it shut down cleanly (its heartbeat stops on purpose)."""
    info: dict[str, object] = field(default_factory=dict)


class StateStore(ABC):
    """A state store behind fleet. See the module docstring for the contract."""

    url: str
    """The URL it was opened with, credentials removed (safe to log)."""

    @abstractmethod
    def register(self, records: Sequence[InvocationRecord]) -> None:
        """Insert new invocations (one round trip for the batch where possible)."""

    @abstractmethod
    def apply(self, changes: Sequence[Change], at: float | None = None) -> list[bool]:
        """Apply compare-and-set changes; True for each that took effect."""

    @abstractmethod
    def clear_due(self, ids: Sequence[str]) -> None:
        """Clear the recovery deadline (`due`) of those of `ids` that are PENDING: their
        message is confirmed on the broker, so recovery must not publish them again.
        Not a status change: no history entry; other ids are left alone."""

    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[InvocationRecord]:
        """The records with these ids that exist, in the order asked."""

    @abstractmethod
    def find(self, query: Query) -> list[InvocationRecord]: ...

    @abstractmethod
    def counts(self) -> dict[Status, int]:
        """Number of invocations in each status (zero counts included)."""

    @abstractmethod
    def purge(self) -> int:
        """Delete every invocation; return how many (tests, `fleet state purge`)."""

    @abstractmethod
    def beat(self, runners: Sequence[RunnerRecord]) -> None:
        """Insert or replace heartbeat records."""

    @abstractmethod
    def runners(self) -> list[RunnerRecord]: ...

    @abstractmethod
    def forget_runners(self, before: float) -> int:
        """Delete heartbeat records last written before `before`; return how many."""

    @abstractmethod
    def lease(self, name: str, holder: str, ttl: float) -> bool:
        """Acquire or renew lease `name` for `holder` until now + ttl."""

    @abstractmethod
    def release(self, name: str, holder: str) -> None:
        """Give up lease `name` if `holder` holds it."""

    @abstractmethod
    def put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """Store content-addressed values (key, data); an existing key is kept."""

    @abstractmethod
    def get_blob(self, key: str) -> bytes | None: ...

    @abstractmethod
    def expire(self, before: float, limit: int = 1000) -> Expired:
        """Delete finished invocations and unreferenced blobs older than `before`, at most
        `limit` of each (see the module docstring); the leader calls it for `retention`."""

    @abstractmethod
    def close(self) -> None: ...


BACKENDS: dict[str, str] = {
    "memory": "fleet.state.memory:MemoryStateStore",
    "sqlite": "fleet.state.sqlite:SQLiteStateStore",
    "mongodb": "fleet.state.mongo:MongoStateStore",
    "mongodb+srv": "fleet.state.mongo:MongoStateStore",
}


def open_state(url: str, *, settings: Settings | None = None, **options: object) -> StateStore:
    """Open the state store named by `url`'s scheme (see `BACKENDS`).

    With `settings`, a backend also gets the settings named by its class attribute
    `SETTINGS` (e.g. `connect_timeout`) as options; explicit options win.
    """
    from fleet._urls import load_backend

    cls = load_backend(BACKENDS, url, "state_url")
    if settings is not None:
        for name in getattr(cls, "SETTINGS", ()):
            options.setdefault(name, getattr(settings, name))
    store = cls(url, **options)
    if not isinstance(store, StateStore):  # pragma: no cover - table misconfigured
        raise ConfigError(f"state_url {url!r} maps to {cls!r}, which is not a StateStore")
    return store


__all__ = [
    "BACKENDS",
    "BLOB_GRACE",
    "BLOB_MARK",
    "Change",
    "ErrorInfo",
    "Expired",
    "InvocationRecord",
    "Query",
    "RunnerRecord",
    "StateStore",
    "blob_key",
    "blob_reference",
    "open_state",
]
