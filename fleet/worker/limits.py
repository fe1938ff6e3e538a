"""Time limits and interrupts for invocations running on threads.

Job: enforce each task's soft and hard time limits, and stop a cancelled invocation.

Contract: one watchdog thread per worker process sleeps until the nearest deadline (an
idle process never wakes). At the soft limit it raises `SoftTimeLimitExceeded` inside
the task's thread; at the hard limit it calls `on_hard`, which fails or retries the
invocation and replaces the slot (the process exits and its supervisor starts a new
one, since a thread cannot be killed). An asynchronous exception reaches Python code at
its next bytecode: code blocked inside a C call (a long `time.sleep`, a socket read)
notices it only when that call returns, which is why the hard limit exists. `on_hard`
runs on a thread of its own: committing the failure may wait for a state store that is
down, and the other invocations' limits must keep firing meanwhile. `resident_mib`
measures the process for the memory limit (`max_memory_per_child`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fleet.errors import SoftTimeLimitExceeded

log = logging.getLogger(__name__)


def interrupt(thread_id: int, exc_type: type[BaseException] | None = None) -> bool:
    """Raise `exc_type` (default: Abandoned) asynchronously in thread `thread_id`."""
    if exc_type is None:
        from fleet.worker.executor import Abandoned

        exc_type = Abandoned
    if not thread_id:
        return False
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )
    return bool(done == 1)


def withdraw(thread_id: int) -> None:
    """Cancel an asynchronous exception sent to thread `thread_id` and not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


class Watchdog:
    """Fires soft and hard time limits of the invocations in hand."""

    def __init__(self, in_hand: Mapping[str, Any], on_hard: Callable[[str], None]) -> None:
        self._in_hand = in_hand
        self._on_hard = on_hard
        self._cond = threading.Condition()
        self._fired_soft: set[str] = set()
        self._fired_hard: set[str] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fleet-watchdog", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Re-read deadlines (an invocation with a limit started)."""
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                wait = self._check(time.time())
                self._cond.wait(wait)

    def _check(self, now: float) -> float | None:
        nearest: float | None = None
        for invocation_id, running in list(self._in_hand.items()):
            soft = getattr(running, "soft_deadline", None)
            hard = getattr(running, "hard_deadline", None)
            if getattr(running, "paused", False):
                continue  # a paused invocation holds no slot; its limits wait too
            if soft is not None and invocation_id not in self._fired_soft:
                if soft <= now:
                    self._fired_soft.add(invocation_id)
                    task = running.envelope.task
                    log.warning(
                        "%s %s: soft time limit reached; raising SoftTimeLimitExceeded in it",
                        task,
                        invocation_id,
                        extra={"invocation_id": invocation_id, "task": task},
                    )
                    running.interrupt(SoftTimeLimitExceeded)
                else:
                    nearest = soft if nearest is None else min(nearest, soft)
            if hard is not None and invocation_id not in self._fired_hard:
                if hard <= now:
                    self._fired_hard.add(invocation_id)
                    threading.Thread(
                        target=self._on_hard,
                        args=(invocation_id,),
                        name=f"fleet-hard-limit-{invocation_id[-6:]}",
                        daemon=True,
                    ).start()
                else:
                    nearest = hard if nearest is None else min(nearest, hard)
        self._fired_soft &= set(self._in_hand)
        self._fired_hard &= set(self._in_hand)
        return None if nearest is None else max(0.0, nearest - now)


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
