"""`examples/backlog.py` runs as its docstring says and prints the backlog it should."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def test_the_backlog_example_counts_ready_work_and_not_what_is_not_due() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET__")}
    done = subprocess.run(
        [sys.executable, "-m", "examples.backlog"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert json.loads(first)["default"] == {"queue": "default", "ready": 3, "due": 0, "total": 3}
    figure = json.loads(second.removeprefix("fleet_queue_backlog: "))
    assert figure["default"] == 3  # the call scheduled a minute ahead is not due yet
