"""Tasks of test_worker_queues.py, imported by the test and by the workers it starts.

The app reads its backends and its queues file from FLEET__* variables, which the test
sets (and then reloads this module) before starting workers with the same environment.
"""

from __future__ import annotations

from fleet import Fleet

app = Fleet()


@app.task(queue="cpu")
def crunch(x: int) -> int:
    return x * 3
