"""Execution slots and the threads that fill them.

Job: bound how many invocations a worker process runs at once, while letting an
invocation that waits on others give its slot away and get one back first when its
results arrive.

Contract: `Slots.take(n)` is only called by the dispatcher for slots that `free()` said
were available (`give_back(n)` returns those it did not use); `free()` reports 0 while
any paused invocation waits to resume, so resuming work always beats new work.
`release()` calls `on_free` (the dispatcher's wake-up). `ThreadPool` runs each job on
an idle thread or a new one: paused invocations keep their threads, so the pool is not
bounded by the slot count.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Slots:
    def __init__(self, size: int, on_free: Callable[[], None] = lambda: None) -> None:
        self.size = size
        self.used = 0
        self._resumers = 0
        self._cond = threading.Condition()
        self.on_free = on_free

    def free(self) -> int:
        with self._cond:
            return 0 if self._resumers else max(0, self.size - self.used)

    def take(self, n: int) -> None:
        with self._cond:
            self.used += n

    def give_back(self, n: int) -> None:
        """Return `n` slots taken and never used (the dispatcher's own call: no wake-up)."""
        if n:
            with self._cond:
                self.used -= n
                self._cond.notify(n)

    def release(self) -> None:
        with self._cond:
            self.used -= 1
            self._cond.notify()
            resumers = self._resumers
        if not resumers:
            self.on_free()

    def resume(self) -> None:
        """Block until a slot is free, ahead of any new work; take it."""
        with self._cond:
            self._resumers += 1
            try:
                while self.used >= self.size:
                    self._cond.wait()
                self.used += 1
            finally:
                self._resumers -= 1
        self.on_free()  # the dispatcher may have been told 0 while we waited

    def idle(self) -> bool:
        with self._cond:
            return self.used == 0 and not self._resumers


class ThreadPool:
    """Runs jobs on reusable daemon threads, starting a new one when none is idle."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                thread = threading.Thread(
                    target=self._loop, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
