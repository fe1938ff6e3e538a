"""Plain functions the RabbitMQ integration tests turn into tasks of their own apps.

They stay undecorated so that each test registers them on an app configured for it
(`TASKS["fib"] = app.task(fib)`); workers on threads of the test process resolve them
by name, and `fib` calls itself through `TASKS`. `make_app` builds such an app: RabbitMQ
at `url`, one queue of its own (`spec` is its YAML settings), SQLite state in `tmp_path`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fleet import Fleet

RELEASE = threading.Event()
"""Set by a test to let `hold` return."""
TASKS: dict[str, Any] = {}


def make_app(url: str, tmp_path: Path, queue: str, spec: str = "{}", **settings: object) -> Fleet:
    queues = tmp_path / "queues.yaml"
    queues.write_text(f"default: {queue}\nqueues:\n  {queue}: {spec}\n")
    return Fleet(
        broker_url=url,
        state_url=f"sqlite:///{tmp_path}/fleet.db",
        queues_file=str(queues),
        heartbeat_interval=0.5,
        **settings,
    )


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
