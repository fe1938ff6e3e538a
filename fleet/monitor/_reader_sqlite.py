"""The monitor's reader for the embedded store: SQL over its own insert-only indexes.

Job: serve `fleet.monitor._reader.Reader` on `SQLiteStateStore` with pages whose cost
does not grow with the table, while costing the workers' writes next to nothing.

Contract:
- It adds three indexes (`INDEXES`), on columns an invocation never changes after it
  is registered (created, task, parent): a status change never updates them (SQLite
  touches only the indexes of changed columns), and a registration updates two or
  three more b-trees. Indexes on status or updated would be rewritten by every status
  change; measured, they halved the store's write rate (bench/monitor_indexes.py).
- A page walks one index newest first: parent's, task's, the store's own (status, due)
  index when only non-final statuses are asked for (few rows, sorted), else created's.
  Filters that index does not answer (a final status, an argument value) are applied
  to a window of at most `SCAN` rows from the cursor; when the window is exhausted
  the page ends there with `scanned_out` and a cursor to go on.
- A set of tasks (`Filters.tasks`, the workflow list) walks the task index once per
  task, each walk reading at most one page (or its window), and merges the walks; a
  walk whose window ran out bounds the merged page (rows older than its edge wait for
  the next page), so no match is skipped or shown twice.
- Charts and the timeline read by created time: what was created in the window (and,
  for the chart and timeline, up to `LOOKBACK` seconds before it), at most `SCAN` rows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fleet.monitor._reader import (
    Filters,
    Page,
    Reader,
    Row,
    Span,
    cursor,
    recovered,
    uncursor,
)
from fleet.state._common import history_from_json
from fleet.state.sqlite import SQLiteStateStore
from fleet.status import FINAL, Status

SCAN = 100_000
"""Rows one page, chart or timeline looks at past what its index answers."""
LOOKBACK = 3600.0
"""Seconds before a window whose creations the chart and the timeline still read."""
RECOVERY_SCAN = 5000
"""Newest invocations looked at for recoveries."""

INDEXES = """
CREATE INDEX IF NOT EXISTS fleet_monitor_created ON fleet_invocations (created);
CREATE INDEX IF NOT EXISTS fleet_monitor_task ON fleet_invocations (task, created);
CREATE INDEX IF NOT EXISTS fleet_monitor_parent ON fleet_invocations (parent, created)
    WHERE parent != '';
"""
_COLS = "rowid, id, task, status, attempt, owner, parent, created, updated"
_ORDER = "ORDER BY created DESC, rowid DESC"


class SQLiteReader(Reader):
    """See the module docstring."""

    def __init__(self, store: SQLiteStateStore) -> None:
        self.db = store.db
        self.db.write(lambda tx: [tx.execute(s) for s in INDEXES.split(";") if s.strip()])

    def page(self, filters: Filters, after: str | None, limit: int) -> Page:
        if filters.tasks and not filters.parent:
            return self._tasks_page(filters, after, limit)
        found, edge = self._walk(filters, after, limit)
        if len(found) > limit or edge is None:
            return self._page(found, limit)
        rows = [_row(r) for r in found]
        return Page(rows, cursor(*edge), True)

    def _walk(
        self, filters: Filters, after: str | None, limit: int
    ) -> tuple[list[Any], tuple[float, int] | None]:
        """Up to `limit + 1` matches newest first along one index, and, when they are
        fewer and a window was scanned to its end, that window's oldest (created, rowid)."""
        where, params, index = self._access(filters)
        if after:
            created, key = uncursor(after)
            where.append("(created, rowid) < (?, ?)")
            params += [created, int(key)]
        rest, rest_params = self._residual(filters, index)
        cond = " AND ".join(where) or "1"
        source = f"fleet_invocations INDEXED BY {index}"
        if not rest:
            sql = f"SELECT {_COLS} FROM {source} WHERE {cond} {_ORDER} LIMIT ?"
            return self.db.query(sql, [*params, limit + 1]), None
        window = f"SELECT {_COLS}, args FROM {source} WHERE {cond} {_ORDER} LIMIT {SCAN}"
        # No ORDER BY outside: the window comes in index order (a co-routine), so the
        # scan stops at the page's last match instead of sorting every match.
        sql = f"SELECT {_COLS} FROM ({window}) WHERE {' AND '.join(rest)} LIMIT ?"
        found = self.db.query(sql, [*params, *rest_params, limit + 1])
        if len(found) > limit:
            return found, None
        # The window's oldest row when the window was full: the next page starts there.
        edge = self.db.query(
            f"SELECT created, rowid FROM {source} WHERE {cond} {_ORDER} LIMIT 1 OFFSET {SCAN - 1}",
            params,
        )
        return found, (edge[0][0], edge[0][1]) if edge else None

    def _tasks_page(self, f: Filters, after: str | None, limit: int) -> Page:
        """Matches of any task of `f.tasks`: one walk per task, merged (module docstring)."""
        tasks = [f.task] if f.task in f.tasks else [] if f.task else list(dict.fromkeys(f.tasks))
        found: list[Any] = []
        edges: list[tuple[float, int]] = []
        for task in tasks:
            rows, edge = self._walk(replace(f, task=task, tasks=()), after, limit)
            found += rows
            edges += [edge] if edge else []
        found.sort(key=lambda r: (r[7], r[0]), reverse=True)
        bound = max(edges, default=None)
        if bound is not None:  # older rows: not every walk has looked that far yet
            found = [r for r in found if (r[7], r[0]) >= bound]
        if len(found) > limit or bound is None:
            return self._page(found, limit)
        return Page([_row(r) for r in found], cursor(*bound), True)

    @staticmethod
    def _access(f: Filters) -> tuple[list[str], list[Any], str]:
        """The conditions one index answers, in its order, and that index."""
        where: list[str] = []
        params: list[Any] = []
        if f.parent:
            where.append("parent = ? AND parent != ''")
            params.append(f.parent)
            index = "fleet_monitor_parent"
        elif f.task:
            where.append("task = ?")
            params.append(f.task)
            index = "fleet_monitor_task"
        elif f.statuses and not FINAL & set(f.statuses):
            where.append(f"status IN ({', '.join('?' * len(f.statuses))})")
            params += [s.value for s in f.statuses]
            index = "fleet_invocations_status"
        else:
            index = "fleet_monitor_created"
        if f.since is not None:
            where.append("created >= ?")
            params.append(f.since)
        if f.until is not None:
            where.append("created <= ?")
            params.append(f.until)
        return where, params, index

    @staticmethod
    def _residual(f: Filters, index: str) -> tuple[list[str], list[Any]]:
        """The filters `index` does not answer, applied to the scanned window."""
        rest: list[str] = []
        params: list[Any] = []
        if f.tasks:  # with a parent (else `_tasks_page` walks each task)
            rest.append(f"task IN ({', '.join('?' * len(f.tasks))})")
            params += list(f.tasks)
        if f.task and index != "fleet_monitor_task":
            rest.append("task = ?")
            params.append(f.task)
        if f.statuses and index != "fleet_invocations_status":
            rest.append(f"status IN ({', '.join('?' * len(f.statuses))})")
            params += [s.value for s in f.statuses]
        if f.arg:
            rest.append("instr(args, ?) > 0")
            params.append(f.arg)
        return rest, params

    @staticmethod
    def _page(found: list[Any], limit: int) -> Page:
        rows = [_row(r) for r in found[:limit]]
        last = found[limit - 1] if len(found) > limit else None
        return Page(rows, cursor(last[7], last[0]) if last else None)

    def finished(self, since: float, bucket: float) -> dict[int, tuple[int, int]]:
        rows = self.db.query(
            "SELECT updated, status FROM fleet_invocations INDEXED BY fleet_monitor_created"
            f" WHERE created >= ? {_ORDER} LIMIT {SCAN}",
            [since - LOOKBACK],
        )
        out: dict[int, tuple[int, int]] = {}
        for updated, status in rows:
            if updated < since or status not in ("SUCCESS", "FAILED"):
                continue
            index = int((updated - since) // bucket)
            ok, bad = out.get(index, (0, 0))
            out[index] = (ok + 1, bad) if status == "SUCCESS" else (ok, bad + 1)
        return out

    def spans(self, start: float, end: float, limit: int) -> list[Span]:
        rows = self.db.query(
            "SELECT id, task, status, created, history, updated"
            " FROM fleet_invocations INDEXED BY fleet_monitor_created"
            f" WHERE created >= ? AND created <= ? {_ORDER} LIMIT {SCAN}",
            [start - LOOKBACK, end],
        )
        return [_span(r) for r in rows if r[5] >= start][:limit]

    def children(self, parent: str, limit: int) -> list[Row]:
        return self.page(Filters(parent=parent), None, limit).rows

    def recoveries(self, since: float, limit: int) -> list[Span]:
        rows = self.db.query(
            "SELECT id, task, status, created, history, updated, attempt"
            " FROM fleet_invocations INDEXED BY fleet_monitor_created"
            f" WHERE created >= ? {_ORDER} LIMIT {RECOVERY_SCAN}",
            [since - LOOKBACK],
        )
        keep = [r for r in rows if r[5] >= since and r[6] >= 1]
        keep.sort(key=lambda r: r[5], reverse=True)
        spans = [_span(r) for r in keep]
        return [s for s in spans if recovered(s.history)][:limit]


def _row(r: Any) -> Row:
    return Row(r[1], r[2], Status(r[3]), *r[4:9])


def _span(r: Any) -> Span:
    return Span(r[0], r[1], Status(r[2]), r[3], history_from_json(r[4]))
