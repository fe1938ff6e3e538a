"""Group commit: concurrent writers of one process share one SQLite transaction.

Job: for `fleet.state.sqlite.SQLiteStateStore.register`, let threads that write at the
same time commit together: one of them (the leader) runs every write waiting at that
moment inside one `Database.write` transaction, the others wait for it. With eight
producer threads, eight registrations cost one lock turn and one commit instead of
eight, and no thread polls the file while another holds it.

Contract:
- `write(fn, alone)` returns once `fn`'s writes are committed, with `fn`'s value, or raises
  what `fn` raised; like `Database.write`, `fn` may run more than once (the transaction
  is retried while the file is busy), so it only writes through the `Tx` it is given.
- No waiting to fill a group (latency first): a thread that finds no write in progress
  writes at once, alone; groups form only from threads that arrive while one is being
  written, and the next leader is one of them.
- In a group of several, each `fn` runs inside a savepoint of its own: a `FleetError`
  it raises (a duplicate invocation id, say) undoes its own writes and goes to its own
  caller only; the others still commit. Any other error (the file, a bug) aborts the
  whole transaction and every writer of the group gets it, as a `Database.error` naming
  the file, chained to the original.
- A leader interrupted by an asynchronous exception (a cancelled task) leaves the
  writes of the others unresolved: they are not told anything, and the next leader
  writes them again. If the transaction had committed already, a write that inserts a
  new row then raises its own error (a duplicate id), as a caller retrying would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fleet._sqlite import Database, Tx
from fleet.errors import FleetError

T = TypeVar("T")


class _Write(Generic[T]):
    __slots__ = ("alone", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[[Tx], T], alone: Callable[[], T] | None) -> None:
        self.fn = fn
        self.alone = alone
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class GroupWriter:
    """Group commit over `db` (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cond = threading.Condition()
        self._waiting: list[_Write[Any]] = []
        self._writing = False

    def write(self, fn: Callable[[Tx], T], alone: Callable[[], T] | None = None) -> T:
        """`fn` committed, maybe with others' writes; `alone`, if given, is what runs
        instead when no other write joins it (a lone statement, without BEGIN/COMMIT)."""
        mine: _Write[T] = _Write(fn, alone)
        with self._cond:
            self._waiting.append(mine)
            while self._writing and not mine.done:
                self._cond.wait()
            if mine.done:
                return mine.result()
            self._writing = True
            group, self._waiting = self._waiting, []
        try:
            self._commit(group)
        finally:
            with self._cond:
                self._writing = False
                # Unresolved (an asynchronous exception hit the leader): written again
                # by the next leader; the leader's own write leaves with the exception.
                self._waiting[:0] = [w for w in group if not w.done and w is not mine]
                self._cond.notify_all()
        return mine.result()

    def _commit(self, group: list[_Write[Any]]) -> None:
        if len(group) == 1:
            (only,) = group
            try:
                only.value = only.alone() if only.alone else self._db.write(only.fn)
            except Exception as exc:
                only.error = exc
            only.done = True
            return
        try:
            self._db.write(lambda tx: _run_all(tx, group))
        except Exception as exc:
            for w in group:
                w.error = _shared(self._db, exc)
        for w in group:
            w.done = True


def _run_all(tx: Tx, group: list[_Write[Any]]) -> None:
    """Every write of `group`, each in a savepoint; a write's `FleetError` undoes that
    write only (kept for its caller), anything else aborts the transaction."""
    for w in group:
        w.value, w.error = None, None  # a retried transaction runs them all again
        tx.execute("SAVEPOINT fleet_group")
        try:
            w.value = w.fn(tx)
        except FleetError as exc:
            tx.execute("ROLLBACK TO fleet_group")
            w.error = exc
        tx.execute("RELEASE fleet_group")


def _shared(db: Database, exc: Exception) -> Exception:
    """The group's failure, one exception object per writer (they raise in parallel)."""
    error = db.error(str(exc))
    error.__cause__ = exc
    return error
