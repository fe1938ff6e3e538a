"""Tasks imported both by integration tests and by the worker processes they start.

The app reads its backends from FLEET__BROKER_URL / FLEET__STATE_URL, which each test
sets (and then reloads this module) before starting workers with the same environment.
"""

from __future__ import annotations

import os
import time

from fleet import Fleet

app = Fleet()


@app.task
def square(x: int) -> int:
    return x * x


@app.direct_task
def echo(tag: str, n: int) -> tuple[str, int, int]:
    return tag, n, os.getpid()


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def slow(n: int, seconds: float) -> str:
    time.sleep(seconds)
    return f"task_{n}_completed"


@app.task
def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1).result() + fib(n - 2).result()
