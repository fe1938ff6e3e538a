"""The fleet tasks the benchmarks run, imported by the harness and by the workers.

Job: define the workloads' tasks on one app whose backends come from the environment
(`FLEET__BROKER_URL`, `FLEET__STATE_URL`, set by the harness before it imports this
module and before it starts workers). Contract: `noop(x)` returns `x`; `sleeper(s)`
sleeps `s` seconds; `fib(n)` computes Fibonacci recursively as tasks that wait on
tasks; `stamp(tick)` returns how late it started after the cron tick that triggered
it; `counters()` returns the statement counters of the worker process that runs it
(the worker side of the state round-trip count); `mark(key)` is the duplicates
benchmark's body (`bench.completions.complete`).
"""

from __future__ import annotations

import os
import time
from datetime import datetime

from bench.completions import complete
from fleet import Fleet

app = Fleet()


@app.task
def noop(x: int) -> int:
    return x


@app.task
def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def mark(key: str) -> str:
    return complete(key)


@app.task
def fib(n: int) -> int:
    if n < 2:
        return n
    left, right = fib(n - 1), fib(n - 2)
    return left.result() + right.result()


@app.task
def stamp(tick: str) -> float:
    """Seconds from the cron tick `tick` (ISO 8601, the firing key) to this run's start."""
    return time.time() - datetime.fromisoformat(tick).timestamp()


@app.task
def counters() -> dict[str, int]:
    """Statements run so far by this worker process's state store and broker."""
    runtime = app.runtime()
    return {
        "pid": os.getpid(),
        "state": int(getattr(runtime.state, "statements", -1)),
        "broker": int(getattr(runtime.broker, "statements", -1)),
    }


@app.workflow
def wf_chain(n: int) -> int:
    """`n` sequential steps as a workflow (bench.workflow_load)."""
    return sum(noop(i).result() for i in range(n))


@app.task
def plain_chain(n: int) -> int:
    """The same `n` sequential calls from a plain task (the baseline)."""
    return sum(noop(i).result() for i in range(n))
