"""SQLite plumbing shared by the embedded broker and state store.

Job: turn a `sqlite:///path.db` URL into a file, open connections set up for many
threads and processes on one host, run short transactions with retries when the file is
busy, and count the statements executed (for benchmarks).

Contract:
- URLs follow SQLAlchemy: `sqlite:///relative/path.db` (relative to the working
  directory) and `sqlite:////absolute/path.db`. Parent folders are created. Options are
  keyword arguments, never query strings.
- Every thread gets its own connection (WAL journal, `synchronous=NORMAL`); connections
  of threads that ended are closed when the next one opens, and `close()` closes all of
  them. A process that forks gets fresh connections.
- Writers on one host take turns through a lock file, and a busy file is waited out
  with short jittered pauses, up to `busy_timeout` seconds: see `fleet._sqlite_locking`.
- WAL checkpoints (which fsync) run on a background thread per `Database`, woken by
  writes and at most every `CHECKPOINT_DELAY` seconds, so they stay off the hot path;
  an idle process never wakes for them. `wal_autocheckpoint` stays on, at a high mark,
  as a safety net.
- `write(fn)` runs `fn` inside `BEGIN IMMEDIATE ... COMMIT` (the write lock is taken up
  front, so a read-modify-write cannot lose a race), rolls back on error and retries the
  whole function while SQLite reports BUSY/LOCKED. `read(fn)` runs without a
  transaction (each statement sees a consistent snapshot), same retries. `query` is one
  read statement; `modify`/`rowcount`/`write_one` one write statement (atomic on its
  own; `write_one` counts as a write transaction).
- sqlite3 errors leave as the `error` class given to `Database` (a FleetError), naming
  the file; FleetErrors raised by `fn` pass through unchanged.
- `statements` counts executions (an executemany of N rows counts N) and `transactions`
  counts write transactions; increments are unlocked, so they may be a hair low under
  heavy threading (they are for benchmarks, not for logic).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fleet._sqlite_locking import Locking
from fleet.errors import ConfigError, FleetError

log = logging.getLogger(__name__)
T = TypeVar("T")

BUSY_TIMEOUT = 30.0
CHECKPOINT_DELAY = 1.0
"""Seconds between background WAL checkpoints while writes keep coming."""
_AUTOCHECKPOINT_PAGES = 20_000
_pid = os.getpid()
"""This process's id, kept up to date across forks (`os.getpid()` is a system call, and
`Database.connection` runs once per statement)."""


_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _forked() -> None:
    # Runs in the child right after fork, before it can start a thread: the parent's
    # threads may have held a Database's locks at that moment, so they are replaced.
    global _pid
    _pid = os.getpid()
    for db in list(_databases):
        db._after_fork()


os.register_at_fork(after_in_child=_forked)


def float_options(
    owner: str, given: Mapping[str, object], defaults: Mapping[str, float]
) -> dict[str, float]:
    """Check keyword options that are positive seconds; reject unknown ones by name."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s) {unknown}; known: {sorted(defaults)}")
    values = dict(defaults)
    for key, value in given.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(f"{owner}: option {key!r} must be seconds > 0, got {value!r}")
        values[key] = float(value)
    return values


def path_from_url(url: str, setting: str) -> Path:
    """The database file named by a sqlite URL (see the module docstring)."""
    scheme, sep, rest = url.partition("://")
    usage = "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
    if scheme.lower() != "sqlite" or not sep:
        raise ConfigError(f"{setting} {url!r} is not a sqlite URL; {usage}")
    if not rest.startswith("/") or len(rest) < 2:
        raise ConfigError(f"{setting} {url!r} names no file; {usage}")
    if "?" in rest or "#" in rest:
        raise ConfigError(
            f"{setting} {url!r}: query strings are not supported; pass options as keywords"
        )
    path = Path(rest[1:])
    if path.name in ("", ":memory:"):
        raise ConfigError(f"{setting} {url!r} names no file; {usage}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{setting} {url!r}: cannot create {str(path.parent)!r}: {exc}") from exc
    return Path(os.path.realpath(path))


class Tx:
    """What `write`/`read` hand to their function: a connection that counts."""

    __slots__ = ("conn", "db")

    def __init__(self, db: Database, conn: sqlite3.Connection) -> None:
        self.db = db
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.db.statements += 1
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        self.db.statements += len(rows)
        return self.conn.executemany(sql, rows)


class Database(Locking):
    """Per-thread connections to one SQLite file, with a schema made sure of once."""

    def __init__(
        self,
        path: Path,
        schema: str,
        error: type[FleetError],
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = path
        self.error = error
        self.busy_timeout = busy_timeout
        self.statements = 0
        self.transactions = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._writer_fds: list[int] = []
        self._gate = threading.Lock()
        """Held by the one thread of this process that waits at (or holds) the writer lock."""
        self._closed = False
        self._pid = os.getpid()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        _databases.add(self)
        self._retry(self._setup(schema))

    def _setup(self, schema: str) -> Callable[[], None]:
        def setup() -> None:
            conn = self.connection()
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema)

        return setup

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._pid == _pid:
            return conn
        return self._open()

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise self.error(f"sqlite database {str(self.path)!r} is closed")
            conn = sqlite3.connect(
                self.path,
                timeout=0,  # we wait for the lock ourselves, see _retry
                isolation_level=None,
                check_same_thread=False,  # only so close() may close every thread's one
                cached_statements=256,
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
            alive = []
            for thread, other in self._conns:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()
            alive.append((threading.current_thread(), conn))
            self._conns = alive
            self._local.conn = conn
            return conn

    def _after_fork(self) -> None:
        """In a forked child (see `_forked`): new locks; forget the parent's connections
        and threads; close its copies of the writer lock descriptors."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = []
        self._local = threading.local()
        self._checkpointer = None
        self._dirty = threading.Event()
        self._gate = threading.Lock()
        for fd in self._writer_fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # a copy: the parent's own descriptor keeps its lock
        self._writer_fds = []

    def _writer(self) -> int:
        """This thread's descriptor of the writer lock file (-1: none can be opened)."""
        mine: tuple[int, int] | None = getattr(self._local, "writer", None)
        if mine is not None and mine[0] == _pid:
            return mine[1]
        try:
            fd = os.open(f"{self.path}-writer", os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            log.debug("sqlite %s: no writer lock file (%s); polling only", self.path, exc)
            fd = -1
        with self._lock:
            if self._closed:
                if fd >= 0:
                    os.close(fd)
                raise self.error(f"sqlite database {str(self.path)!r} is closed")
            if fd >= 0:
                self._writer_fds.append(fd)
        self._local.writer = (_pid, fd)
        return fd

    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in one write transaction (BEGIN IMMEDIATE), retried while busy."""

        def attempt() -> T:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = fn(Tx(self, conn))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.transactions += 1
            self._wrote()
            return value

        return self._retry(self._exclusive(attempt))

    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` without a transaction, retried while busy."""
        return self._retry(lambda: fn(Tx(self, self.connection())))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One read statement; returns all rows."""
        return self.read(lambda tx: tx.execute(sql, params).fetchall())

    def modify(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One write statement on its own (atomic by itself); returns its rows
        (RETURNING)."""
        rows: list[Any] = self._statement(sql, params, lambda cursor: cursor.fetchall())
        return rows

    def rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement on its own; returns the number of rows changed."""
        n: int = self._statement(sql, params, lambda cursor: cursor.rowcount)
        return n

    def _statement(self, sql: str, params: Sequence[Any], take: Callable[[sqlite3.Cursor], T]) -> T:
        """Run one write statement under the writer lock, retried while busy; `take`
        reads its result inside the attempt (a truthy result means it wrote)."""
        value = self._retry(
            self._exclusive(lambda: take(Tx(self, self.connection()).execute(sql, params)))
        )
        if value:
            self._wrote()
        return value

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """`write` of a single statement, without BEGIN and COMMIT: SQLite runs a lone
        write statement as a write transaction of its own, taking the write lock as it
        starts (as BEGIN IMMEDIATE would). Returns the number of rows changed."""
        n = self.rowcount(sql, params)
        self.transactions += 1
        return n

    def _wrote(self) -> None:
        """Note a commit: the checkpointer will fold the WAL back into the file soon."""
        if self._checkpointer is None:
            with self._lock:
                if self._checkpointer is None and not self._closed:
                    self._checkpointer = threading.Thread(
                        target=self._checkpoint_loop,
                        name=f"fleet-checkpoint {self.path.name}",
                        daemon=True,
                    )
                    self._checkpointer.start()
        if not self._dirty.is_set():
            self._dirty.set()

    def _checkpoint_loop(self) -> None:
        # PASSIVE: never waits for readers or writers; whatever it cannot copy now, a
        # later round copies. Several processes' checkpointers simply take turns.
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._dirty.clear()
            try:
                self.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.debug("sqlite %s: background checkpoint skipped: %s", self.path, exc)
            except FleetError:  # closed meanwhile
                return
            self._stop.wait(CHECKPOINT_DELAY)  # coalesce: one checkpoint per delay at most

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            checkpointer = self._checkpointer
        self._stop.set()
        self._dirty.set()
        if checkpointer is not None and checkpointer is not threading.current_thread():
            checkpointer.join()
        with self._lock:
            conns, self._conns = self._conns, []
            fds, self._writer_fds = self._writer_fds, []
        for _, conn in conns:
            conn.close()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def placeholders(values: Iterable[object]) -> str:
    """'?, ?, ?' for each value (callers chunk long lists with `chunks`)."""
    return ", ".join("?" for _ in values)


def chunks(values: Sequence[T], size: int = 500) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
