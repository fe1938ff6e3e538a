"""Group commit of concurrent registrations (fleet._sqlite_group) on a real SQLite file.

Each test holds the first writer inside its transaction until the others have queued
behind it, so the group that follows is known exactly, then checks what was committed,
in how many transactions, and who was told what.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleet._sqlite import Database, Tx
from fleet._sqlite_group import GroupWriter
from fleet.errors import DuplicateInvocationError, FleetError, StateError
from fleet.state import HistoryEntry, InvocationRecord
from fleet.state.sqlite import SQLiteStateStore
from fleet.status import Status
from tests.waiting import wait_until

SCHEMA = "CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY)"


def insert(key: str) -> Callable[[Tx], str]:
    def fn(tx: Tx) -> str:
        try:
            tx.execute("INSERT INTO t (id) VALUES (?)", (key,))
        except sqlite3.IntegrityError as exc:
            raise StateError(f"{key} twice") from exc
        return key

    return fn


class Run:
    """Writers in threads, the first one held inside its transaction."""

    def __init__(self, group: GroupWriter) -> None:
        self.group = group
        self.release = threading.Event()
        self.inside = threading.Event()
        self.results: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def held(self, key: str) -> Callable[[Tx], str]:
        def fn(tx: Tx) -> str:
            tx.execute("INSERT INTO t (id) VALUES (?)", (key,))
            self.inside.set()
            assert self.release.wait(30)
            return key

        return fn

    def start(self, name: str, fn: Callable[[Tx], Any]) -> None:
        def run() -> None:
            try:
                self.results[name] = self.group.write(fn)
            except BaseException as exc:  # kept for the test to look at
                self.results[name] = exc

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def queued(self, n: int) -> None:
        wait_until(lambda: len(self.group._waiting) == n, f"{n} queued writers", 10)

    def finish(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(30)


def rows(db: Database) -> set[str]:
    return {r[0] for r in db.query("SELECT id FROM t")}


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "g.db", SCHEMA, StateError)


def test_writers_arriving_during_a_write_commit_together(db: Database) -> None:
    run = Run(GroupWriter(db))
    run.start("first", run.held("first"))
    assert run.inside.wait(10)
    for i in range(5):
        run.start(f"w{i}", insert(f"w{i}"))
    run.queued(5)
    before = db.transactions
    run.finish()
    assert run.results == {"first": "first", **{f"w{i}": f"w{i}" for i in range(5)}}
    assert rows(db) == {"first", *(f"w{i}" for i in range(5))}
    assert db.transactions - before == 2, "the five queued writes took more than one commit"


def test_a_writer_alone_runs_its_lone_statement(db: Database) -> None:
    group = GroupWriter(db)
    used = []

    def alone() -> str:
        used.append(True)
        return insert("solo")(Tx(db, db.connection()))

    assert group.write(insert("solo"), alone) == "solo"
    assert used == [True] and rows(db) == {"solo"}


def test_a_fleet_error_goes_to_its_writer_only(db: Database) -> None:
    group = GroupWriter(db)
    group.write(insert("taken"))
    run = Run(group)
    run.start("first", run.held("first"))
    assert run.inside.wait(10)
    run.start("dup", insert("taken"))
    run.start("ok", insert("ok"))
    run.queued(2)
    run.finish()
    assert isinstance(run.results["dup"], StateError) and "taken twice" in str(run.results["dup"])
    assert run.results["ok"] == "ok" and run.results["first"] == "first"
    assert rows(db) == {"taken", "first", "ok"}


def test_another_error_fails_the_whole_group_naming_the_file(db: Database) -> None:
    run = Run(GroupWriter(db))
    run.start("first", run.held("first"))
    assert run.inside.wait(10)

    def broken(tx: Tx) -> None:
        tx.execute("INSERT INTO missing (id) VALUES (1)")

    run.start("broken", broken)
    run.start("ok", insert("ok"))
    run.queued(2)
    run.finish()
    for name in ("broken", "ok"):
        error = run.results[name]
        assert isinstance(error, StateError) and "g.db" in str(error), error
    assert run.results["broken"] is not run.results["ok"]
    assert rows(db) == {"first"}


def test_writes_left_by_an_interrupted_leader_are_written_by_the_next(db: Database) -> None:
    """An asynchronous exception (a cancelled task) hits whichever thread leads: its
    caller gets it, and the other write of the group is written by the next leader."""
    run = Run(GroupWriter(db))
    run.start("first", run.held("first"))
    assert run.inside.wait(10)
    calls = []

    def interrupted_once(tx: Tx) -> str:
        calls.append(True)
        tx.execute("INSERT INTO t (id) VALUES ('k')")
        if len(calls) == 1:
            raise KeyboardInterrupt  # in the leading thread, mid-transaction
        return "k"

    run.start("k", interrupted_once)
    run.queued(1)
    run.start("w", insert("w"))
    run.queued(2)
    run.finish()
    cut = [name for name in ("k", "w") if isinstance(run.results[name], KeyboardInterrupt)]
    assert len(cut) == 1, run.results
    (kept,) = {"k", "w"} - set(cut)
    assert run.results[kept] == kept and rows(db) == {"first", kept}


def record(invocation_id: str) -> InvocationRecord:
    return InvocationRecord(
        id=invocation_id,
        task="t",
        queue="q",
        args=b"",
        codec="json",
        status=Status.PENDING,
        history=(HistoryEntry(Status.PENDING, 1.0, "", "submitted"),),
        created=1.0,
        updated=1.0,
    )


def test_concurrent_registrations_share_commits_and_keep_their_errors(tmp_path: Path) -> None:
    store = SQLiteStateStore(f"sqlite:///{tmp_path}/s.db")
    store.register([record("dup")])
    barrier = threading.Barrier(8)
    errors: dict[str, BaseException] = {}

    def caller(k: int) -> None:
        barrier.wait()
        for i in range(50):
            key = "dup" if (k, i) == (3, 25) else f"{k}-{i}"
            try:
                store.register([record(key)])
            except FleetError as exc:
                errors[key] = exc

    before = store.transactions
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert list(errors) == ["dup"] and isinstance(errors["dup"], DuplicateInvocationError)
    registered = {row[0] for row in store.db.query("SELECT id FROM fleet_invocations")}
    expected = {"dup", *(f"{k}-{i}" for k in range(8) for i in range(50))} - {"3-25"}
    assert registered == expected
    assert store.transactions - before < 399, "no registration shared a commit"
