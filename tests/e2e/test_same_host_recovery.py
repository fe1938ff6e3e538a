"""A whole worker SIGKILLed and a new one started on the same host: its work resumes at once.

`dead_after` is an hour here, so only same-host recovery (the starting supervisor sees
that the pids of the dead runners are gone) can explain the work finishing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Status
from fleet.worker._same_host import NOTE, host_id
from tests.e2e.conftest import FAST, Stack, open_stack

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(host_id() is None, reason="same-host recovery needs Linux /proc"),
]
SLOW_DEATH = {**FAST, "FLEET__DEAD_AFTER": "3600"}


@pytest.fixture(params=["sqlite", "rabbitmq+sqlite"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    settings = dict(SLOW_DEATH)
    if request.param == "rabbitmq+sqlite":
        name = request.getfixturevalue("unique_name")("same-host")
        settings |= {
            "FLEET__BROKER_URL": request.getfixturevalue("rabbitmq").url,
            "FLEET__NAME": name,
            "FLEET__DEFAULT_QUEUE": name,
        }
    request.param = "sqlite"  # the state store (and, unless overridden, the broker)
    yield from open_stack(request, tmp_path, monkeypatch, "tests.e2e.recovery_tasks", settings)


def test_a_new_worker_on_the_host_resumes_the_work_of_one_killed_whole(stack: Stack) -> None:
    first = stack.worker(processes=1, threads=3)
    invocations = [stack.tasks.slow_task(n, 4.0) for n in range(3)]
    stack.wait_until("3 tasks running", lambda: stack.statuses(invocations) == [Status.RUNNING] * 3)

    os.killpg(first.pid, signal.SIGKILL)  # the supervisor and its worker processes
    assert first.process is not None
    first.process.wait()
    began = time.monotonic()
    stack.worker(processes=1, threads=3)

    results = [inv.result(timeout=60) for inv in invocations]
    assert results == [f"task_{n}_completed" for n in range(3)]
    print(f"all 3 finished {time.monotonic() - began:.1f}s after the new worker started")
    for inv in invocations:
        history = [(h.status, h.note) for h in inv.history]
        assert (Status.PENDING, NOTE) in history
        assert [s for s, _ in history].count(Status.SUCCESS) == 1
    runners = {r.id: r for r in invocations[0].app.runtime().state.runners()}
    killed = [r for r in runners.values() if r.info.get("found_dead_by")]
    assert {r.kind for r in killed} == {"supervisor", "process"}
    assert all(r.stopped for r in killed)
