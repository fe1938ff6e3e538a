"""Tasks of the worker in `test_metrics_worker` (backends from FLEET__* variables)."""

from __future__ import annotations

from fleet import Fleet

app = Fleet()


@app.task
def square(x: int) -> int:
    return x * x


@app.task(max_retries=1, retry_backoff=0.01)
def broken(x: int) -> int:
    raise ValueError(f"broken {x}")
