"""`examples/concurrency.py` runs as its docstring says: inline, and on workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet.concurrency._held import RUNNING_REASON
from fleet.state import Query
from fleet.testing.worker import WorkerCommand
from tests.e2e.conftest import FAST, ROOT

pytestmark = pytest.mark.timeout(180)
MODULE = "examples.concurrency"


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
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_inline_registration_cache_and_keys_apply() -> None:
    # Inline, each call has finished before the next starts: two refreshes run.
    assert run_example(clean_env(FLEET__INLINE="true")) == [
        "catalog refreshes: 2 (3 items)",
        "lamp: 3500 cents, 1 run(s)",
        "charged order 7: 4850 cents (1 charge)",
        "ledger lines: 6",
    ]


def test_on_workers_every_option_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = clean_env(FLEET__BROKER_URL=url, FLEET__STATE_URL=url, **FAST)
    app = Fleet(broker_url=url, state_url=url)
    with WorkerCommand(f"{MODULE}:app", processes=2, threads=4, env=env, cwd=str(ROOT)) as w:
        w.wait_consumers(app, 2)
        lines = run_example(env)
    assert lines == [
        "catalog refreshes: 1 (3 items)",
        "lamp: 3500 cents, 1 run(s)",
        "charged order 7: 4850 cents (1 charge)",
        "ledger lines: 6",
    ]
    state = app.runtime().state
    posts = state.find(Query(task=f"{MODULE}.post_ledger"))
    assert len(posts) == 6 and all(r.status is Status.SUCCESS for r in posts)
    # One running per account: the five acme calls arrive together (a worker process
    # claims up to 4 messages at once), so the limit parks some BLOCKED until the running
    # one frees its permit; zeta's single call never waits. (Timestamps cannot show the
    # exclusion: a claim's RUNNING time is taken before its permit, which may be granted
    # only after the previous holder's SUCCESS time; bodies that record their own spans
    # check it under load in tests/integration/test_concurrency_races.py.)
    waited = {
        app.codec.decode(r.result or b"")[0]
        for r in posts
        for h in r.history
        if h.status is Status.BLOCKED and h.note.startswith(RUNNING_REASON)
    }
    assert waited == {"acme"}, [r.history for r in posts]
    app.close()
