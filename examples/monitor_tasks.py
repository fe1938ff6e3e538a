"""Tasks to watch in the monitor (`make demo`-style example and the browser tests).

Run a worker and the monitor over the embedded store:

    fleet worker --app examples.monitor_tasks:app --processes 1 --threads 4 &
    fleet monitor --app examples.monitor_tasks:app --port 8000

then submit work from Python (`python -m examples.monitor_tasks`) and open
http://127.0.0.1:8000. `late` exists only where MONITOR_LATE=1, so a worker started
without it dead-letters `late` invocations (unknown task) until one that has it runs them.
"""

from __future__ import annotations

import os
import time

from fleet import Fleet, Trigger
from fleet import workflows as wf

app = Fleet()


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def explode(reason: str) -> None:
    raise ValueError(f"exploded on purpose: {reason}")


@app.task(triggers=[Trigger.on_exception(explode, derive={"failed": "source"})])
def alert(failed: str) -> str:
    """Fired by every failure of `explode` (the triggers page shows the firings)."""
    return f"alerted about {failed}"


@app.task
def sleepy(seconds: float) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return seconds


@app.task
def fan_out(n: int) -> int:
    """Submits `n` children and waits for them (a family tree in the detail page)."""
    return sum(add.parallelize([(i, i) for i in range(n)]).results())


@app.workflow
def checkout(n: int) -> int:
    """A small workflow (the Workflows page): a step, data, a recorded value."""
    wf.set("items", n)
    total = add(n, n).result()
    wf.set("total", total)
    wf.now()
    return total


if os.environ.get("MONITOR_LATE") == "1":

    @app.task
    def late(x: int) -> int:
        return x * 10


def main() -> None:
    print("sum:", add(1, 2).result(timeout=30))
    print("fan out:", fan_out(3).result(timeout=60))
    failed = explode("demo")
    print("failed:", failed.id)


if __name__ == "__main__":
    main()
