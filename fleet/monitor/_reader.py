"""The monitor's read side: invocation pages, charts and timelines without loading tables.

Job: answer the monitor's questions (one page of invocations matching filters, finished
counts per time bucket, what ran in a time window, children, recent recoveries) fast on
a large store, without adding abstract methods to `StateStore`.

Contract:
- `reader_for(store)` returns `SQLiteReader` for the embedded store (its own indexes,
  made sure of once with `CREATE INDEX IF NOT EXISTS`, and SQL keyset pagination) and
  `ScanReader` for any other store (`StateStore.find` with a bound, filtered here).
- `page(filters, after, limit)` returns the newest matching rows first, ordered by
  (created, key) descending; `Page.next` is the cursor of the following page or None.
  A cursor is opaque text; a malformed one is a `ValueError`. The cost of a page does
  not grow with the table for task, status, parent and time filters (each has an index
  that serves the order); the argument filter scans at most `ARG_SCAN` rows per page.
- Nothing here writes invocations: reads only (plus the index creation).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fleet.state import InvocationRecord, Query, StateStore
from fleet.state._common import history_from_json
from fleet.state.sqlite import SQLiteStateStore
from fleet.status import HistoryEntry, Status

ARG_SCAN = 100_000
"""Rows an argument-value search looks at per page (newest first from the cursor)."""

INDEXES = """
CREATE INDEX IF NOT EXISTS fleet_monitor_created ON fleet_invocations (created);
CREATE INDEX IF NOT EXISTS fleet_monitor_task ON fleet_invocations (task, created);
CREATE INDEX IF NOT EXISTS fleet_monitor_status ON fleet_invocations (status, created);
CREATE INDEX IF NOT EXISTS fleet_monitor_parent ON fleet_invocations (parent, created);
CREATE INDEX IF NOT EXISTS fleet_monitor_updated ON fleet_invocations (updated);
"""


@dataclass(frozen=True, slots=True)
class Filters:
    """What the invocation list shows; empty fields match everything."""

    task: str = ""
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
    """True when an argument search stopped at `ARG_SCAN` rows (more may match later)."""


@dataclass(frozen=True, slots=True)
class Span:
    """One invocation in a time window, with its history (for the timeline)."""

    id: str
    task: str
    status: Status
    created: float
    history: tuple[HistoryEntry, ...] = field(default_factory=tuple)


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
        """Invocations with a recovery in their history, updated since `since`."""


def _row(r: InvocationRecord) -> Row:
    return Row(r.id, r.task, r.status, r.attempt, r.owner, r.parent, r.created, r.updated)


def _cursor(created: float, key: int | str) -> str:
    return f"{created!r}~{key}"


def _uncursor(text: str) -> tuple[float, str]:
    created, sep, key = text.partition("~")
    if not sep:
        raise ValueError(f"bad page cursor {text!r}")
    return float(created), key


class SQLiteReader(Reader):
    """Reads the embedded store's tables through its database (see the module doc)."""

    def __init__(self, store: SQLiteStateStore) -> None:
        self.db = store.db
        self.db.write(lambda tx: [tx.execute(s) for s in INDEXES.split(";") if s.strip()])

    def page(self, filters: Filters, after: str | None, limit: int) -> Page:
        where, params = self._where(filters)
        if after:
            created, key = _uncursor(after)
            where.append("(created, rowid) < (?, ?)")
            params += [created, int(key)]
        cond = " AND ".join(where) or "1"
        cols = "rowid, id, task, status, attempt, owner, parent, created, updated"
        order = "ORDER BY created DESC, rowid DESC"
        if not filters.arg:
            sql = f"SELECT {cols} FROM fleet_invocations WHERE {cond} {order} LIMIT ?"
            found = self.db.query(sql, [*params, limit + 1])
            return self._page(found, limit)
        window = f"SELECT {cols}, args FROM fleet_invocations WHERE {cond} {order} LIMIT ?"
        sql = f"SELECT {cols} FROM ({window}) WHERE instr(args, ?) > 0 {order} LIMIT ?"
        found = self.db.query(sql, [*params, ARG_SCAN, filters.arg, limit + 1])
        if len(found) > limit:
            return self._page(found, limit)
        # The window's oldest row, if the window is full (an index walk, no args read).
        edge = self.db.query(
            f"SELECT created, rowid FROM fleet_invocations WHERE {cond} {order}"
            f" LIMIT 1 OFFSET {ARG_SCAN - 1}",
            params,
        )
        rows = [Row(r[1], r[2], Status(r[3]), *r[4:]) for r in found]
        return Page(rows, _cursor(edge[0][0], edge[0][1]) if edge else None, bool(edge))

    @staticmethod
    def _page(found: list[Any], limit: int) -> Page:
        rows = [Row(r[1], r[2], Status(r[3]), *r[4:]) for r in found[:limit]]
        more = len(found) > limit
        last = found[limit - 1] if more else None
        return Page(rows, _cursor(last[7], last[0]) if last else None)

    @staticmethod
    def _where(f: Filters) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if f.task:
            where.append("task = ?")
            params.append(f.task)
        if f.statuses:
            where.append(f"status IN ({', '.join('?' * len(f.statuses))})")
            params += [s.value for s in f.statuses]
        if f.parent:
            where.append("parent = ?")
            params.append(f.parent)
        if f.since is not None:
            where.append("created >= ?")
            params.append(f.since)
        if f.until is not None:
            where.append("created <= ?")
            params.append(f.until)
        return where, params

    def finished(self, since: float, bucket: float) -> dict[int, tuple[int, int]]:
        rows = self.db.query(
            "SELECT CAST((updated - ?1) / ?2 AS INTEGER), status, count(*) FROM fleet_invocations"
            " WHERE updated >= ?1 AND status IN ('SUCCESS', 'FAILED') GROUP BY 1, 2",
            [since, bucket],
        )
        out: dict[int, tuple[int, int]] = {}
        for index, status, n in rows:
            ok, bad = out.get(index, (0, 0))
            out[index] = (ok + n, bad) if status == "SUCCESS" else (ok, bad + n)
        return out

    def spans(self, start: float, end: float, limit: int) -> list[Span]:
        rows = self.db.query(
            "SELECT id, task, status, created, history FROM fleet_invocations"
            " WHERE updated >= ? AND created <= ? ORDER BY updated LIMIT ?",
            [start, end, limit],
        )
        return [self._span(r) for r in rows]

    @staticmethod
    def _span(r: Sequence[Any]) -> Span:
        return Span(r[0], r[1], Status(r[2]), r[3], history_from_json(r[4]))

    def children(self, parent: str, limit: int) -> list[Row]:
        return self.page(Filters(parent=parent), None, limit).rows

    def recoveries(self, since: float, limit: int) -> list[Span]:
        rows = self.db.query(
            "SELECT id, task, status, created, history FROM fleet_invocations"
            " WHERE updated >= ? AND history LIKE '%recover%' ORDER BY updated DESC LIMIT ?",
            [since, limit],
        )
        return [self._span(r) for r in rows]


class ScanReader(Reader):
    """Any store: `StateStore.find` with a bound (`SCAN`), filtered and ordered here."""

    SCAN = 10_000

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def _records(self, f: Filters) -> list[InvocationRecord]:
        found = self.store.find(Query(statuses=f.statuses, task=f.task or None, limit=self.SCAN))
        keep = [
            r
            for r in found
            if (not f.parent or r.parent == f.parent)
            and (f.since is None or r.created >= f.since)
            and (f.until is None or r.created <= f.until)
            and (not f.arg or f.arg in r.args)
        ]
        return sorted(keep, key=lambda r: (r.created, r.id), reverse=True)

    def page(self, filters: Filters, after: str | None, limit: int) -> Page:
        records = self._records(filters)
        if after:
            created, key = _uncursor(after)
            records = [r for r in records if (r.created, r.id) < (created, key)]
        rows = [_row(r) for r in records[:limit]]
        more = len(records) > limit
        return Page(rows, _cursor(rows[-1].created, rows[-1].id) if more else None)

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
        hit = [r for r in found if any("recover" in h.note for h in r.history)]
        return [Span(r.id, r.task, r.status, r.created, r.history) for r in hit[-limit:]]


def reader_for(store: StateStore) -> Reader:
    """The fastest reader for `store` (see the module docstring)."""
    if isinstance(store, SQLiteStateStore):
        return SQLiteReader(store)
    return ScanReader(store)


def now() -> float:
    return time.time()
