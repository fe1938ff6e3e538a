"""Plain functions the RabbitMQ integration tests turn into tasks of their own apps.

They stay undecorated so that each test registers them on an app configured for it
(`TASKS["fib"] = app.task(fib)`); workers on threads of the test process resolve them
by name, and `fib` calls itself through `TASKS`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

RELEASE = threading.Event()
"""Set by a test to let `hold` return."""
TASKS: dict[str, Any] = {}


def hold(seconds: float) -> str:
    """Block until `RELEASE` is set (at most `seconds`)."""
    RELEASE.wait(seconds)
    return "released"


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def quick(n: int) -> int:
    return n + 1


def fib(n: int) -> int:
    if n < 2:
        return n
    task = TASKS["fib"]
    return int(task(n - 1).result(timeout=60)) + int(task(n - 2).result(timeout=60))
