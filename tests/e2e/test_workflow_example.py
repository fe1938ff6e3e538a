"""`examples/order_workflow.py` runs as its docstring says: inline, and on a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.testing.worker import WorkerCommand
from tests.e2e.conftest import FAST, ROOT

pytestmark = pytest.mark.timeout(180)
MODULE = "examples.order_workflow"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET__")}
    return {**env, **extra}


def run_example(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", MODULE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_inline_the_order_is_auto_approved() -> None:
    assert run_example(clean_env(FLEET__INLINE="true")) == [
        "charged 12, approved by auto",
        "stage: done packed: 4",
    ]


def test_on_a_worker_the_signal_approves_the_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = clean_env(FLEET__BROKER_URL=url, FLEET__STATE_URL=url, **FAST)
    with WorkerCommand(f"{MODULE}:app", threads=2, env=env, cwd=str(ROOT)):
        assert run_example(env) == ["charged 12, approved by dana", "stage: done packed: 4"]
