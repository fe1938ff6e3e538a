"""The monitor's read side: keyset pages are complete, disjoint and newest first, over
the embedded store (SQL, its own indexes) and any other (the scan reader), for every
filter; the SQLite list query uses an index (no full-table sort)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.codec import get_codec
from fleet.monitor._reader import Filters, Reader, ScanReader, SQLiteReader, arg_needle, reader_for
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


def test_sqlite_list_query_is_served_by_an_index(tmp_path: Path) -> None:
    from fleet.state.sqlite import SQLiteStateStore

    store = SQLiteStateStore(f"sqlite:///{tmp_path / 'f.db'}")
    SQLiteReader(store)
    for where in ("1", "task = 't.a'", "status IN ('FAILED')", "parent = 'x'"):
        plan = store.db.query(
            "EXPLAIN QUERY PLAN SELECT id FROM fleet_invocations WHERE "
            f"{where} AND (created, rowid) < (5.0, 9) ORDER BY created DESC, rowid DESC LIMIT 51"
        )
        text = " ".join(str(row[-1]) for row in plan)
        assert "USING INDEX fleet_monitor_" in text, (where, text)
        assert "TEMP B-TREE" not in text, (where, text)  # no sort of the matches
    store.close()


def test_a_malformed_cursor_is_a_value_error(store: StateStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        reader_for(store).page(Filters(), "garbage", 10)
