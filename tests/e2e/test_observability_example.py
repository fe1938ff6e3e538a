"""`examples/observability.py` runs as its docstring says: a real `fleet worker
--metrics-port` over the embedded SQLite stack, the example submitting and scraping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from fleet import Fleet
from fleet.testing._procs import free_port
from fleet.testing.worker import WorkerCommand
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.timeout(180)


def test_the_example_prints_what_the_worker_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET__")}
    env |= {"FLEET__BROKER_URL": url, "FLEET__STATE_URL": url, "FLEET__METRICS_HOST": "127.0.0.1"}
    port = free_port()
    worker = WorkerCommand("examples.observability:app", threads=2, env=env, cwd=str(ROOT))
    worker.command += ["--metrics-port", str(port)]
    probe = Fleet(broker_url=url, state_url=url)
    with worker:
        worker.wait_consumers(probe, 1)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "examples.observability",
                "--scrape",
                f"http://127.0.0.1:{port}/metrics",
                "--images",
                "6",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    probe.close()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "6 thumbnails made"
    assert lines[1:3] == [f"failed after a retry: image {i} is corrupt" for i in (0, 1)]
    thumbnail, corrupt = lines[3].split(), lines[4].split()
    assert thumbnail[:6] == [
        "thumbnail:",
        "started=6",
        "succeeded=6",
        "retried=0",
        "failed=0",
        "runs=6",
    ]
    assert thumbnail[7] == "waits=6"
    assert corrupt[:6] == [
        "corrupt:",
        "started=4",
        "succeeded=0",
        "retried=2",
        "failed=2",
        "runs=4",
    ]
    assert corrupt[7] == "waits=2"
