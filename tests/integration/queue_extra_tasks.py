"""A task module listed in `task_modules` by test_worker_queues.py: its task routes to a
queue the app module's own tasks do not use."""

from __future__ import annotations

from tests.integration.queue_tasks import app


@app.task(queue="idle")
def nap(x: int) -> int:
    return x
