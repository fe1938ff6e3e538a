"""A worker process that is draining (stopping, finishing what it holds) keeps beating.

Its heartbeat says it is alive; if it stopped beating when told to stop, the leader
would take it for dead after `dead_after` and requeue the invocations it is still
finishing, which would then run twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from fleet import Fleet, Status
from fleet.testing.worker import running_worker
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(
    broker_url=URL,
    state_url=URL,
    heartbeat_interval=0.05,
    shutdown_grace=10,
    queues_file=str(Path(__file__).with_name("worker_queues.yaml")),
)
release = threading.Event()


@app.task
def held() -> str:
    release.wait(30)
    return "done"


def test_a_draining_process_keeps_beating_until_its_work_is_done() -> None:
    with running_worker(app, threads=1) as worker:
        invocation = held()
        wait_until(lambda: invocation.status is Status.RUNNING, "the task to run", 10)
        worker.stop()

        def beat() -> float:
            (record,) = [r for r in app.runtime().state.runners() if r.id == worker.id]
            return record.beat

        stopped_at = time.time()
        wait_until(lambda: beat() > stopped_at + 0.3, "heartbeats while draining", 3)
        assert invocation.status is Status.RUNNING
        release.set()
        assert invocation.result(timeout=10) == "done"
    (record,) = [r for r in app.runtime().state.runners() if r.id == worker.id]
    assert record.stopped  # the last beat says it stopped, after the loop's beats
    app.close()
