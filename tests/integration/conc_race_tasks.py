"""Tasks of the concurrency races, imported by the tests, their producer processes and
the worker processes they start (backends from FLEET__BROKER_URL / FLEET__STATE_URL)."""

from __future__ import annotations

import time

from fleet import Fleet

app = Fleet()


@app.task(registration_concurrency="TASK")
def refresh() -> str:
    """Returns its own invocation id: a caller's result shows which invocation it got."""
    time.sleep(0.005)
    current = app.current_invocation()
    assert current is not None
    return current.id


@app.task(running_concurrency="KEYS", key_arguments=("key",))
def post(key: int, n: int) -> tuple[int, float, float]:
    """Returns `n` and the span its body ran (the same clock in every process of a host)."""
    start = time.time()
    time.sleep(0.01)
    return n, start, time.time()


@app.task(rate_limit="50/s")
def tick(n: int) -> int:
    return n
