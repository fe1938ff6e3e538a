"""How threads get through the write lock of a SQLite file, and wait out a busy one.

Job: let the writers on one host take turns at a SQLite file's write lock without
polling, and wait for a locked file with short pauses instead of SQLite's busy handler,
so that waits stay near the lock's real hold time. `Database` (`fleet._sqlite`) mixes
this in and provides `_writer()`: the calling thread's descriptor of `<file>-writer`
(-1 when it cannot be opened).

Contract:
- Writers on one host take turns through an `flock` on `<file>-writer`, held around
  each write attempt, so a writer that waits for another is woken by the kernel the
  moment it is done, instead of polling SQLite (in W1 the producer spent ~5% of its
  time in those pauses). One thread per process waits there at a time (each thread
  has its own descriptor); the others poll SQLite as below, so that a release never
  wakes a crowd (many paused invocations' threads writing at once, as in W4, ran 30%
  slower when all of them waited on the lock). Nothing is held between attempts or
  after an error; a process that dies releases it with its descriptors; where the
  file cannot be opened, writers just poll SQLite.
- Locks are waited for here, not by SQLite's busy handler (which sleeps 1, 2, 5, 10 ms:
  a p99 of ~9 ms with four processes at 1,200 round trips/s on the dev VM, against
  ~1.5 ms with the short jittered pauses used here), up to `busy_timeout` seconds. The
  pauses start at 30 us (a write lock is held for ~50 us); a thread that ever waited
  asks Linux for timers without the default 50 us of slack, so that they stay short.
- `_retry(attempt)` turns a sqlite3 error that is not BUSY/LOCKED, and a file that
  stays busy for `busy_timeout` seconds, into the `error` class, naming the file.
"""

from __future__ import annotations

import ctypes
import fcntl
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fleet.errors import FleetError

T = TypeVar("T")

_FIRST_PAUSE = 0.00003
_LAST_PAUSE = 0.004
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


class Locking:
    """Taking turns at the writer lock, and retrying while the file is busy."""

    path: Path
    error: type[FleetError]
    busy_timeout: float
    _local: threading.local
    _gate: threading.Lock

    def _writer(self) -> int:
        raise NotImplementedError  # the database opens this thread's descriptor

    def _exclusive(self, attempt: Callable[[], T]) -> Callable[[], T]:
        """`attempt`, run holding the host's writer lock (see the module docstring)."""

        def locked() -> T:
            fd = self._writer()
            if fd < 0 or not self._gate.acquire(blocking=False):
                return attempt()  # another thread of this process is in line: poll
            try:
                # Taken inside the try, and the finally's first call releases it: an
                # asynchronous exception (a cancelled task) cannot leave it held.
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    return attempt()
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                self._gate.release()

        return locked

    def _retry(self, attempt: Callable[[], T]) -> T:
        # SQLite's own busy handler sleeps 1, 2, 5, 10, ... ms, and several processes
        # contending for a lock held ~20 us then see waits of 100+ ms. Waiting here with
        # short, jittered, growing pauses keeps the tail near the lock's real hold time.
        deadline = 0.0
        pause = _FIRST_PAUSE
        while True:
            try:
                return attempt()
            except sqlite3.Error as exc:
                if not is_busy(exc):
                    raise self.error(f"sqlite database {str(self.path)!r}: {exc}") from exc
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.busy_timeout
                elif now >= deadline:
                    raise self.error(
                        f"sqlite database {str(self.path)!r} stayed locked for "
                        f"{self.busy_timeout:g} s: {exc}"
                    ) from exc
                if not getattr(self._local, "precise", False):
                    self._local.precise = True
                    precise_timers()
                time.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2.0, _LAST_PAUSE)


_PR_SET_TIMERSLACK = 29


def precise_timers() -> None:
    """Let this thread's sleeps end on time (Linux: 1 us of timer slack instead of 50)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: sleeps are merely longer
        pass
