"""The host-wide writer lock of the SQLite backends: taken per write, never left held."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fleet._sqlite import Database, Tx
from fleet.errors import StateError
from fleet.worker.limits import interrupt
from tests.waiting import wait_until

SCHEMA = "CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
DEADLINE = 30.0


def open_db(path: Path) -> Database:
    db = Database(path, SCHEMA, StateError)
    db.write(lambda tx: tx.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)"))
    return db


def count(db: Database) -> int:
    return int(db.query("SELECT n FROM counter WHERE id = 1")[0][0])


def bump(tx: Tx) -> None:
    # Read, then write: only safe if writers really take turns.
    n = tx.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]
    tx.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))


def bump_many(path: str, times: int) -> None:
    db = open_db(Path(path))
    for _ in range(times):
        db.write(bump)
    db.close()


@contextmanager
def held_elsewhere(path: Path) -> Iterator[Callable[[], None]]:
    """The writer lock held as another process's writer holds it; call to let go."""
    fd = os.open(f"{path}-writer", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield lambda: fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def assert_lock_free(path: Path) -> None:
    other = threading.Thread(target=bump_many, args=(str(path), 1))
    other.start()
    other.join(DEADLINE)
    assert not other.is_alive(), "the writer lock was left held"


def test_processes_and_threads_take_turns(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = open_db(path)
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=bump_many, args=(str(path), 200)) for _ in range(3)]
    for child in children:
        child.start()
    threads = [threading.Thread(target=bump_many, args=(str(path), 200)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for worker in [*children, *threads]:
        worker.join(DEADLINE)
    assert all(child.exitcode == 0 for child in children)
    assert count(db) == 5 * 200
    assert Path(f"{path}-writer").exists()
    db.close()


def test_an_error_inside_a_write_releases_the_lock(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.db")

    def fails(tx: Tx) -> None:
        bump(tx)
        raise ValueError("boom")

    with pytest.raises(ValueError):
        db.write(fails)
    assert_lock_free(tmp_path / "x.db")
    assert count(db) == 1  # the failed write was rolled back
    db.close()


def test_an_interrupted_writer_releases_the_lock(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.db")
    inside = threading.Event()

    class Stop(Exception):
        pass

    def slow(tx: Tx) -> None:
        bump(tx)
        inside.set()
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:  # Python code: the interrupt lands here
            time.sleep(0.001)

    errors: list[BaseException] = []

    def run() -> None:
        try:
            db.write(slow)
        except Stop as exc:
            errors.append(exc)

    writer = threading.Thread(target=run)
    writer.start()
    assert inside.wait(DEADLINE)
    assert writer.ident is not None and interrupt(writer.ident, Stop)
    writer.join(DEADLINE)
    assert errors and isinstance(errors[0], Stop)
    assert_lock_free(tmp_path / "x.db")
    assert count(db) == 1
    db.close()


def test_a_waiting_writer_goes_on_when_the_holder_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = open_db(path)
    done = threading.Event()
    with held_elsewhere(path) as let_go:
        writer = threading.Thread(target=lambda: (bump_many(str(path), 1), done.set()))
        writer.start()
        assert not done.wait(0.2)  # waits for the lock...
        let_go()
        assert done.wait(DEADLINE)  # ...and goes on once it is free
    writer.join(DEADLINE)
    assert count(db) == 1
    db.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_with_its_own_locks(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.db")
    db.write(bump)  # the parent has its descriptor now
    db._lock.acquire()  # as another thread of the parent may hold it at the fork
    pid = os.fork()
    if pid != 0:
        db._lock.release()
    if pid == 0:  # the child
        code = 1
        try:
            db.write(bump)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    db.write(bump)
    assert count(db) == 3
    db.close()


def test_one_thread_per_process_waits_at_the_lock_the_others_poll(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.db")
    first_done, second_done = threading.Event(), threading.Event()
    with held_elsewhere(tmp_path / "x.db") as let_go:
        first = threading.Thread(target=lambda: (db.write(bump), first_done.set()))
        first.start()
        wait_until(db._gate.locked, "the first thread to be in line at the lock")
        second = threading.Thread(target=lambda: (db.write(bump), second_done.set()))
        second.start()
        assert second_done.wait(DEADLINE)  # not in line: it went through SQLite alone
        assert not first_done.is_set()
        let_go()
        assert first_done.wait(DEADLINE)
    for thread in (first, second):
        thread.join(DEADLINE)
    assert count(db) == 2
    db.close()
