"""Work someone waits for does not queue behind unrelated work."""

from __future__ import annotations

import time
import uuid

from fleet import Fleet, Status
from fleet.testing.worker import running_worker

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(broker_url=URL, state_url=URL)


@app.task
def sleeper(n: int) -> int:
    time.sleep(0.02)
    return n


@app.task
def child() -> str:
    return "child"


@app.task
def parent() -> str:
    return "parent+" + child().result()


def test_awaited_child_runs_before_backlog() -> None:
    root = parent()
    backlog = sleeper.parallelize(range(40))
    with running_worker(app, threads=1):
        assert root.result(timeout=30) == "parent+child"
        finished = root.history[-1].at
        assert backlog.results(timeout=30) == list(range(40))
    starts = sorted(
        next(h.at for h in inv.history if h.status is Status.RUNNING) for inv in backlog.invocations
    )
    # With one slot and FIFO, the parent would wait behind 40 sleepers; its child is
    # urgent, so the parent finishes while most of the backlog is still queued.
    assert finished < starts[5]
