"""Tasks for the worker-runtime e2e tests (imported by the test and by the workers)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fleet import Fleet

app = Fleet()


def _mark(kind: str, n: int) -> None:
    folder = os.environ.get("FLEET_TEST_MARKS")
    if folder:
        Path(folder, f"{kind}-{n}-{os.getpid()}-{time.monotonic_ns()}").touch()


@app.task
def slow_task(task_num: int, seconds: float = 8.0) -> str:
    _mark("start", task_num)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return f"task_{task_num}_completed"


@app.task(hard_time_limit=1.0)
def runaway(n: int) -> None:
    time.sleep(60)


@app.task
def quick(n: int) -> int:
    return n + 1


@app.task
def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1).result() + fib(n - 2).result()


@app.task(max_retries=3, retry_for=(KeyError,), retry_backoff=0.2)
def flaky(key: str, failures: int) -> int:
    """Fails `failures` times (counted in files, across processes), then succeeds."""
    folder = Path(os.environ["FLEET_TEST_MARKS"])
    attempt = len(list(folder.glob(f"flaky-{key}-*"))) + 1
    Path(folder, f"flaky-{key}-{attempt}").touch()
    if attempt <= failures:
        raise KeyError(key)
    return attempt


@app.task
def wait_on(invocation_id: str) -> object:
    return app.invocation(invocation_id).result()


@app.task
def cycle_root() -> object:
    me = app.current_invocation()
    assert me is not None
    return wait_on(me.id).result()


@app.task(soft_time_limit=0.5)
def soft_limited() -> str:
    from fleet import SoftTimeLimitExceeded

    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "stopped softly"


@app.task
def neighbour(n: int, seconds: float) -> int:
    """Runs `seconds`, marking its start and its end (bodies counted in files)."""
    _mark("neighbour-start", n)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    _mark("neighbour-done", n)
    return n
