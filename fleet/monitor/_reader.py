"""The monitor's read side: invocation pages, charts and timelines without loading tables.

Job: answer the monitor's questions (one page of invocations matching filters, finished
counts per time bucket, what ran in a time window, children, recent recoveries) fast on
a large store, without adding abstract methods to `StateStore`.

Contract:
- Two readers: `fleet.monitor._reader_sqlite.SQLiteReader` for the embedded store (SQL
  over indexes of its own, keyset pages) and `ScanReader` here for any other store
  (`StateStore.find` with a bound, filtered and ordered here); `_web.reader_for` picks.
- `page(filters, after, limit)` returns the newest matching rows first, ordered by
  (created, key) descending; `Page.next` is the cursor of the following page or None;
  `Page.scanned_out` says a page ended early at a scan bound (more may match further
  back: follow `next`). A cursor is opaque text; a malformed one is a `ValueError`.
- Nothing here writes invocations.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from fleet.state import InvocationRecord, Query, StateStore
from fleet.status import HistoryEntry, Status


@dataclass(frozen=True, slots=True)
class Filters:
    """What the invocation list shows; empty fields match everything."""

    task: str = ""
    tasks: tuple[str, ...] = ()
    """Invocations of any of these tasks (the workflow list: every workflow task)."""
    statuses: tuple[Status, ...] = ()
    since: float | None = None
    until: float | None = None
    parent: str = ""
    """Children of this invocation (a workflow run's steps, a fan-out's parts)."""
    arg: bytes = b""
    """Encoded bytes an argument must contain (see `arg_needles`)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the invocation list."""

    id: str
    task: str
    status: Status
    attempt: int
    owner: str
    parent: str
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    next: str | None
    scanned_out: bool = False
    """True when the page ended at a scan bound (more may match further back)."""


@dataclass(frozen=True, slots=True)
class Span:
    """One invocation in a time window, with its history (for the timeline)."""

    id: str
    task: str
    status: Status
    created: float
    history: tuple[HistoryEntry, ...] = field(default_factory=tuple)


def recovery_steps(history: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    """The entries where someone other than the owner took a run away: PENDING (requeued)
    or FAILED (given up) right after RUNNING/PAUSED, changed by another runner."""
    held = (Status.RUNNING, Status.PAUSED)
    return [
        h
        for before, h in pairwise(history)
        if before.status in held
        and h.status in (Status.PENDING, Status.FAILED)
        and h.owner != before.owner
    ]


def recovered(history: Sequence[HistoryEntry]) -> bool:
    return bool(recovery_steps(history))


def arg_needle(text: str, codec: str) -> bytes:
    """The value typed in the filter (a JSON literal, else a plain string) encoded as
    `codec` ("msgpack" or "json") encodes it: what the bytes of arguments containing
    an argument equal to it contain."""
    from fleet.codec import get_codec

    try:
        value: object = json.loads(text)
    except ValueError:
        value = text
    if codec == "json":
        return json.dumps(value).encode()
    return get_codec("msgpack").encode(value)


class Reader(ABC):
    """See the module docstring."""

    @abstractmethod
    def page(self, filters: Filters, after: str | None, limit: int) -> Page: ...

    @abstractmethod
    def finished(self, since: float, bucket: float) -> dict[int, tuple[int, int]]:
        """Per bucket index from `since`: (succeeded, failed) finished in it."""

    @abstractmethod
    def spans(self, start: float, end: float, limit: int) -> list[Span]:
        """Invocations alive at some time in [start, end] (at most `limit`)."""

    @abstractmethod
    def children(self, parent: str, limit: int) -> list[Row]: ...

    @abstractmethod
    def recoveries(self, since: float, limit: int) -> list[Span]:
        """Invocations with a recovery (`recovery_steps`) in their history, updated
        since `since`, newest first (a reader may look at a bounded number only)."""


def _row(r: InvocationRecord) -> Row:
    return Row(r.id, r.task, r.status, r.attempt, r.owner, r.parent, r.created, r.updated)


def cursor(created: float, key: int | str) -> str:
    return f"{created!r}~{key}"


def uncursor(text: str) -> tuple[float, str]:
    created, sep, key = text.partition("~")
    if not sep:
        raise ValueError(f"bad page cursor {text!r}")
    return float(created), key


class ScanReader(Reader):
    """Any store: the `SCAN` most recently updated matches of `StateStore.find`, filtered
    and ordered here (MongoDB, memory; their `find` orders oldest first)."""

    SCAN = 10_000

    def __init__(self, store: StateStore) -> None:
        self.store = store

    WINDOWS = (60.0, 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0, None)

    def _recent(self, statuses: tuple[Status, ...], task: str | None) -> list[InvocationRecord]:
        """The most recently updated matches, at most `SCAN`. `find` returns the oldest
        first, so this asks for ever wider windows back from now and keeps the widest
        that holds all its matches (the last minute's first `SCAN` if even it overflows)."""
        now = time.time()
        best: list[InvocationRecord] = []
        for span in self.WINDOWS:
            after = None if span is None else now - span
            query = Query(statuses=statuses, task=task, updated_after=after, limit=self.SCAN)
            found = self.store.find(query)
            if len(found) >= self.SCAN:
                return best or found
            best = found
        return best

    def _records(self, f: Filters) -> list[InvocationRecord]:
        task = f.task or (f.tasks[0] if len(f.tasks) == 1 else None)
        found = self._recent(f.statuses, task)
        keep = [
            r
            for r in found
            if (not f.tasks or r.task in f.tasks)
            and (not f.parent or r.parent == f.parent)
            and (f.since is None or r.created >= f.since)
            and (f.until is None or r.created <= f.until)
            and (not f.arg or f.arg in r.args)
        ]
        return sorted(keep, key=lambda r: (r.created, r.id), reverse=True)

    def page(self, filters: Filters, after: str | None, limit: int) -> Page:
        records = self._records(filters)
        if after:
            created, key = uncursor(after)
            records = [r for r in records if (r.created, r.id) < (created, key)]
        rows = [_row(r) for r in records[:limit]]
        more = len(records) > limit
        return Page(rows, cursor(rows[-1].created, rows[-1].id) if more else None)

    def finished(self, since: float, bucket: float) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        done = (Status.SUCCESS, Status.FAILED)
        for r in self.store.find(Query(statuses=done, updated_after=since, limit=self.SCAN)):
            index = int((r.updated - since) // bucket)
            ok, bad = out.get(index, (0, 0))
            out[index] = (ok + 1, bad) if r.status is Status.SUCCESS else (ok, bad + 1)
        return out

    def spans(self, start: float, end: float, limit: int) -> list[Span]:
        found = self.store.find(Query(updated_after=start, limit=self.SCAN))
        keep = [r for r in found if r.created <= end][:limit]
        return [Span(r.id, r.task, r.status, r.created, r.history) for r in keep]

    def children(self, parent: str, limit: int) -> list[Row]:
        return self.page(Filters(parent=parent), None, limit).rows

    def recoveries(self, since: float, limit: int) -> list[Span]:
        found = self.store.find(Query(updated_after=since, limit=self.SCAN))
        hit = [r for r in found if r.attempt >= 1 and recovered(r.history)]
        hit.sort(key=lambda r: r.updated, reverse=True)
        return [Span(r.id, r.task, r.status, r.created, r.history) for r in hit[:limit]]
