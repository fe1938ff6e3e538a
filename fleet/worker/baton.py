"""Who drives the consumer: one thread at a time, lent to the invocation it received.

Job: let the thread that received a message run the invocation itself, so that a short
task costs no hand-off to another thread (a wake-up and a round of GIL contention), while
the consumer is never left undriven for longer than `patience`.

Contract:
- The baton is FREE, HELD (its holder is inside consumer code), LENT (its holder runs an
  invocation it claimed, and nobody touches the consumer) or CLOSED.
- `take()`: FREE -> HELD (False otherwise). `lend()`: HELD -> LENT, by the holder.
  `back()`: LENT -> HELD by the same thread, False if the baton was passed on meanwhile
  (the thread is then an ordinary pool thread). `drop()`: HELD -> FREE, True, when the
  calling thread holds it (else nothing, False): a holder that stops driving.
- `pass_on()`: LENT -> FREE at once, by the lender's own thread (an invocation about to
  wait for others), then `on_free()`, which hands the driving to an idle thread.
- A standby thread ends any lend older than `patience` the same way. It wakes every
  `patience` seconds while lends keep happening and sleeps without a timeout once none
  began for `quiet` seconds, so an idle process never wakes for it.
- `run_if_lent(fn)` runs `fn` only while the baton is lent to the calling thread, under
  the lock that a takeover needs: the lender may use the consumer from inside it.
- `close()`: waits until nobody is HELD, then CLOSED for good (a LENT holder finds out
  in `back()`); returns at once if already closed.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class State(enum.Enum):
    FREE = "free"
    HELD = "held"
    LENT = "lent"
    CLOSED = "closed"


class Baton:
    def __init__(
        self, on_free: Callable[[], None], patience: float = 0.003, quiet: float = 0.1
    ) -> None:
        self.on_free = on_free
        self.patience = patience
        self.quiet = quiet
        self.state = State.FREE
        self.takeovers = 0
        """Lends ended by the standby (for tests and diagnostics)."""
        self._cond = threading.Condition()
        self._holder = 0
        """The thread holding the baton, HELD or LENT."""
        self._since = 0.0
        self._ticking = False
        self._standby: threading.Thread | None = None

    def take(self) -> bool:
        with self._cond:
            if self.state is not State.FREE:
                return False
            self.state = State.HELD
            self._holder = threading.get_ident()
            return True

    def lend(self) -> None:
        now = time.monotonic()
        with self._cond:
            assert self.state is State.HELD, f"lend() while {self.state.value}"
            self.state = State.LENT
            self._since = now
            if not self._ticking:
                self._ticking = True
                if self._standby is None:
                    self._standby = threading.Thread(
                        target=self._watch, name="fleet-standby", daemon=True
                    )
                    self._standby.start()
                else:
                    self._cond.notify_all()

    def back(self) -> bool:
        with self._cond:
            if self.state is State.LENT and self._holder == threading.get_ident():
                self.state = State.HELD
                return True
            return False

    def drop(self) -> bool:
        with self._cond:
            if self.state is not State.HELD or self._holder != threading.get_ident():
                return False
            self._free()
            return True

    def run_if_lent(self, fn: Callable[[], bool]) -> bool:
        """`fn()` if the baton is lent to this thread (it cannot be taken over meanwhile),
        else False."""
        with self._cond:
            return self.state is State.LENT and self._holder == threading.get_ident() and fn()

    def pass_on(self) -> None:
        with self._cond:
            if self.state is not State.LENT or self._holder != threading.get_ident():
                return
            self._free()
        self.on_free()

    def close(self) -> None:
        with self._cond:
            while self.state is State.HELD:
                self._cond.wait()
            self.state = State.CLOSED
            self._cond.notify_all()

    def _free(self) -> None:
        self.state = State.FREE
        self._holder = 0
        self._cond.notify_all()

    def _watch(self) -> None:
        with self._cond:
            while self.state is not State.CLOSED:
                since = time.monotonic() - self._since
                if self.state is State.LENT and since >= self.patience:
                    self._free()
                    self.takeovers += 1
                    self._cond.release()
                    try:
                        self.on_free()
                    finally:
                        self._cond.acquire()
                elif self.state is not State.LENT and since >= self.quiet:
                    self._ticking = False
                    self._cond.wait()
                elif self.state is State.LENT:
                    self._cond.wait(self.patience - since)
                else:
                    self._cond.wait(self.patience)
