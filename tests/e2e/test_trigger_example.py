"""`examples/trigger_pipeline.py` runs as its docstring says: inline, and on a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet.state import Query
from fleet.testing.worker import WorkerCommand
from tests.e2e.conftest import FAST, ROOT
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
MODULE = "examples.trigger_pipeline"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET__")}
    return {**env, **extra}


def test_inline_the_triggers_run_the_pipeline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", MODULE],
        cwd=ROOT,
        env=clean_env(FLEET__INLINE="true"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["orders total: 49.75", "refunded order 7"]


def test_on_a_worker_the_triggers_run_the_pipeline(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = clean_env(FLEET__BROKER_URL=url, FLEET__STATE_URL=url, **FAST)
    with WorkerCommand(f"{MODULE}:app", threads=2, env=env, cwd=str(ROOT)):
        done = subprocess.run(
            [sys.executable, "-m", MODULE], cwd=ROOT, env=env, timeout=60, check=False
        )
        assert done.returncode == 0
        app = Fleet(broker_url=url, state_url=url)
        state = app.runtime().state

        def finished(task: str) -> list[bytes | None]:
            query = Query(statuses=[Status.SUCCESS], task=f"{MODULE}.{task}")
            return [r.result for r in state.find(query)]

        wait_until(lambda: finished("publish") and finished("refund"), "the pipeline", 60)
        assert [app.codec.decode(r) for r in finished("publish") if r] == ["orders total: 49.75"]
        app.close()
