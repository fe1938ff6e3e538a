"""`python -m fleet.testing.submit` (the chart's `helm test` Pod) against a real
`fleet worker` on the embedded stack: a result, a task's error, and a missing worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.testing.worker import WorkerCommand

pytestmark = pytest.mark.timeout(180)


def submit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.testing.submit", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_submit_waits_for_the_result_and_names_failures(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = {"FLEET__BROKER_URL": url, "FLEET__STATE_URL": url}
    task = "tests.integration.cli_tasks.flaky"
    missing = submit(env, task, "--args", '["a"]', "--timeout", "1")
    assert missing.returncode == 1 and "ResultTimeoutError" in missing.stderr  # no worker yet
    with WorkerCommand("tests.integration.cli_tasks:app", env=env):
        failed = submit(env, task, "--args", '["b"]')
        assert failed.returncode == 1
        assert "ValueError: first call for 'b' fails" in failed.stderr
        done = submit(env, task, "--args", '["b"]', "--timeout", "60")
        assert done.returncode == 0, done.stderr
        assert "result: 'b ok'" in done.stdout
    assert submit(env, task, "--args", "{").returncode == 2
