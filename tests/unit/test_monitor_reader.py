"""The monitor's read side: keyset pages are complete, disjoint and newest first, over
the embedded store (SQL, its own indexes) and any other (the scan reader), for every
filter; the SQLite list query uses an index (no full-table sort)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.codec import get_codec
from fleet.monitor._reader import Filters, Reader, ScanReader, arg_needle
from fleet.monitor._reader_sqlite import SQLiteReader
from fleet.monitor._web import reader_for
from fleet.state import InvocationRecord, StateStore, open_state
from fleet.status import HistoryEntry, Status

TASKS = ["t.a", "t.b", "t.c"]
STATUSES = [Status.SUCCESS, Status.FAILED, Status.PENDING, Status.RUNNING]


def records(n: int = 120) -> list[InvocationRecord]:
    codec = get_codec("msgpack")
    out = []
    for i in range(n):
        created = 1000.0 + i // 3  # ties: three records share each created time
        out.append(
            InvocationRecord(
                id=f"{i:032x}",
                task=TASKS[i % 3],
                queue="default",
                args=codec.encode([[i % 7, f"user-{i % 5}"], {}]),
                codec="msgpack",
                status=STATUSES[i % 4],
                history=(HistoryEntry(Status.PENDING, created, "", "submitted"),),
                parent=f"{i % 4:032x}" if i >= 10 else "",
                created=created,
                updated=created + 1,
            )
        )
    return out


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = f"sqlite:///{tmp_path / 'f.db'}" if request.param == "sqlite" else "memory://"
    if request.param == "memory":
        url += uuid.uuid4().hex
    s = open_state(url)
    s.register(records())
    yield s
    s.close()


def walk(reader: Reader, filters: Filters, limit: int) -> list[str]:
    seen: list[str] = []
    after = None
    for _ in range(1000):
        page = reader.page(filters, after, limit)
        assert len(page.rows) <= limit
        seen += [r.id for r in page.rows]
        if page.next is None:
            return seen
        after = page.next
    raise AssertionError("pages never ended")


FILTERS = [
    Filters(),
    Filters(task="t.b"),
    Filters(statuses=(Status.FAILED, Status.RUNNING)),
    Filters(parent=f"{2:032x}"),
    Filters(since=1010.0, until=1020.0),
    Filters(task="t.a", statuses=(Status.SUCCESS,), since=1005.0),
    Filters(arg=arg_needle('"user-3"', "msgpack")),
    Filters(task="t.c", arg=arg_needle("6", "msgpack")),
    Filters(tasks=("t.a", "t.c")),
    Filters(tasks=("t.a", "t.b"), statuses=(Status.FAILED, Status.SUCCESS), since=1004.0),
    Filters(tasks=("t.b", "t.c"), parent=f"{1:032x}"),
    Filters(task="t.c", tasks=("t.b", "t.c")),
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: repr(f)[8:60])
@pytest.mark.parametrize("limit", [1, 7, 500])
def test_pages_cover_every_match_once_newest_first(
    store: StateStore, filters: Filters, limit: int
) -> None:
    codec = get_codec("msgpack")

    def matches(r: InvocationRecord) -> bool:
        args = codec.decode(r.args)[0]  # type: ignore[index]
        wanted_arg = (
            filters.arg == b""
            or (filters.arg == codec.encode("user-3") and args[1] == "user-3")
            or (filters.arg == codec.encode(6) and args[0] == 6)
        )
        return (
            (not filters.task or r.task == filters.task)
            and (not filters.tasks or r.task in filters.tasks)
            and (not filters.statuses or r.status in filters.statuses)
            and (not filters.parent or r.parent == filters.parent)
            and (filters.since is None or r.created >= filters.since)
            and (filters.until is None or r.created <= filters.until)
            and wanted_arg
        )

    expected = [r for r in records() if matches(r)]
    assert expected, "a filter that matches nothing proves little"
    seen = walk(reader_for(store), filters, limit)
    assert sorted(seen) == sorted(r.id for r in expected)  # each once, none missing
    created = {r.id: r.created for r in expected}
    assert [created[i] for i in seen] == sorted(created.values(), reverse=True)


def test_reader_for_picks_sql_for_the_embedded_store(store: StateStore) -> None:
    expected = SQLiteReader if store.url.startswith("sqlite") else ScanReader
    assert type(reader_for(store)) is expected


def test_finished_counts_per_bucket(store: StateStore) -> None:
    buckets = reader_for(store).finished(1001.0, 10.0)
    ok = sum(a for a, _ in buckets.values())
    bad = sum(b for _, b in buckets.values())
    assert (ok, bad) == (30, 30)  # 120 records: a quarter each succeeded and failed
    assert set(buckets) == {0, 1, 2, 3}


def test_sqlite_pages_walk_an_index_without_sorting(tmp_path: Path) -> None:
    from fleet.state.sqlite import SQLiteStateStore

    store = SQLiteStateStore(f"sqlite:///{tmp_path / 'f.db'}")
    store.register(records())
    reader = SQLiteReader(store)
    seen: list[tuple[str, list[object]]] = []
    query = store.db.query

    def recording(sql: str, params: list[object] = ()) -> list[object]:  # type: ignore[assignment]
        seen.append((sql, list(params)))
        return query(sql, params)

    reader.db.query = recording  # type: ignore[method-assign]
    for filters in [*FILTERS, Filters(statuses=(Status.PENDING,))]:
        seen.clear()
        page = reader.page(filters, None, 5)
        reader.page(filters, page.next, 5) if page.next else None
        for sql, params in seen:
            plan = " ".join(str(row[-1]) for row in query("EXPLAIN QUERY PLAN " + sql, params))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (filters, plan)
            if filters.statuses != (Status.PENDING,):  # the few non-final rows: sorted
                assert "TEMP B-TREE" not in plan, (filters, plan)
    store.close()


def test_status_changes_touch_no_monitor_index(tmp_path: Path) -> None:
    """The monitor's indexes are on columns a status change never writes (the cost of
    indexes on status or updated: bench/monitor_indexes.py)."""
    from fleet.monitor._reader_sqlite import INDEXES

    columns = set()
    for line in INDEXES.split(";"):
        if "(" in line:
            columns |= {c.strip() for c in line.split("(", 1)[1].split(")")[0].split(",")}
    assert columns == {"created", "task", "parent"}


def test_a_malformed_cursor_is_a_value_error(store: StateStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        reader_for(store).page(Filters(), "garbage", 10)


def test_recoveries_are_runs_taken_away_by_another_runner(tmp_path: Path) -> None:
    def rec(i: int, *steps: tuple[Status, str]) -> InvocationRecord:
        history = tuple(HistoryEntry(s, 2000.0 + k, who, "") for k, (s, who) in enumerate(steps))
        return InvocationRecord(
            id=f"{i:032x}", task="t", queue="q", args=b"\x90", codec="msgpack",
            status=steps[-1][0], attempt=1, history=history, created=2000.0, updated=2010.0 + i,
        )  # fmt: skip

    p, r, s, f = Status.PENDING, Status.RUNNING, Status.SUCCESS, Status.FAILED
    requeued = rec(1, (p, ""), (r, "w1"), (p, "leader"), (r, "w2"), (s, "w2"))
    given_up = rec(2, (p, ""), (r, "w1"), (f, "supervisor"))
    plain_failure = rec(3, (p, ""), (r, "w1"), (f, "w1"))
    plain_success = rec(4, (p, ""), (r, "w1"), (Status.PAUSED, "w1"), (r, "w1"), (s, "w1"))
    everything = [requeued, given_up, plain_failure, plain_success]
    for url in (f"sqlite:///{tmp_path / 'r.db'}", f"memory://{uuid.uuid4().hex}"):
        store = open_state(url)
        store.register(everything)
        found = reader_for(store).recoveries(1999.0, 10)
        assert [x.id for x in found] == [given_up.id, requeued.id], url
        store.close()


def test_scan_reader_shows_the_most_recent_when_there_are_more_than_it_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    now = time.time()
    old = [
        InvocationRecord(
            id=f"a{i:031x}", task="t", queue="q", args=b"\x90", codec="msgpack",
            status=Status.SUCCESS, created=now - 7200 - i, updated=now - 7200 - i,
        )
        for i in range(60)
    ]  # fmt: skip
    new = [
        InvocationRecord(
            id=f"b{i:031x}", task="t", queue="q", args=b"\x90", codec="msgpack",
            status=Status.SUCCESS, created=now - 600 + i, updated=now - 600 + i,
        )
        for i in range(60)
    ]  # fmt: skip
    store = open_state(f"memory://{uuid.uuid4().hex}")
    store.register(old + new)  # find returns the old ones first
    monkeypatch.setattr(ScanReader, "SCAN", 100)
    seen = walk(ScanReader(store), Filters(), 25)
    assert seen == [r.id for r in reversed(new)]  # the newest hour, all of it
    store.close()


@pytest.mark.parametrize("limit", [1, 4, 50])
def test_a_task_set_with_small_windows_skips_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """Each task's walk ends at its window; the merged page stops at the newest such
    edge, so rows older than it come on a later page, once."""
    from fleet.monitor import _reader_sqlite

    monkeypatch.setattr(_reader_sqlite, "SCAN", 5)
    store = open_state(f"sqlite:///{tmp_path / 'w.db'}")
    store.register(records())
    filters = Filters(tasks=("t.a", "t.b"), statuses=(Status.FAILED,))
    expected = [r for r in records() if r.task in filters.tasks and r.status is Status.FAILED]
    pages = []
    after = None
    for _ in range(1000):
        page = SQLiteReader(store).page(filters, after, limit)  # type: ignore[arg-type]
        pages.append(page)
        if page.next is None:
            break
        after = page.next
    seen = [r.id for p in pages for r in p.rows]
    assert sorted(seen) == sorted(r.id for r in expected)
    assert any(p.scanned_out for p in pages) or limit == 1  # 1: a window holds more
    store.close()
