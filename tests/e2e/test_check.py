"""`fleet check`, the liveness probe, after a worker process was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import APP, ROOT, Stack

pytestmark = pytest.mark.timeout(240)


def check() -> int:
    command = [sys.executable, "-m", "fleet", "check", "--app", APP]
    return subprocess.run(command, cwd=ROOT, capture_output=True, check=False).returncode


def test_check_is_healthy_again_once_a_killed_child_is_replaced(stack: Stack) -> None:
    stack.worker(processes=1, threads=1)
    app = stack.tasks.app
    stack.wait_until("a healthy check", lambda: check() == 0)
    state = app.runtime().state
    child = next(r for r in state.runners() if r.kind == "process" and not r.stopped)
    os.kill(child.pid, signal.SIGKILL)  # as the OOM killer would

    def replaced() -> bool:
        return any(
            r.kind == "process" and r.pid != child.pid and not r.stopped for r in state.runners()
        )

    stack.wait_until("a replacement worker process", replaced)
    dead_after = app.settings.dead_after
    # Past the killed child's staleness: a check that still judged it would fail now.
    stack.wait_until(
        "the killed child's record to go stale", lambda: time.time() > child.beat + dead_after + 1
    )
    stack.wait_until("a healthy check", lambda: check() == 0, timeout=30)
    killed = next(r for r in state.runners() if r.id == child.id)
    assert killed.stopped  # its supervisor said so for it
