"""A real `fleet monitor` process and a real worker over one embedded store, and a
Chromium browser driven by Playwright, for the monitor's browser tests.

Contract: `MonitorStack` sets the FLEET__* settings of a fresh SQLite store in the test
process (the producer) and in the processes it starts; `monitor(host, **env)` starts
`python -m fleet monitor` and waits until it answers HTTP; everything it started is
stopped by PID when the stack closes. `browser()` launches Debian's /usr/bin/chromium
(no browser download); tests skip without it, and fail under CI=true.
`shot(page, name)` saves a screenshot under tmp/artifacts/monitor (or
$FLEET_TEST_ARTIFACTS).
"""

from __future__ import annotations

import importlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fleet.testing._procs import ManagedProcess, free_port
from fleet.testing.worker import WorkerCommand
from tests.waiting import wait_until

ROOT = Path(__file__).parents[2]
APP = "examples.monitor_tasks:app"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FLEET_TEST_ARTIFACTS", ROOT / "tmp" / "artifacts" / "monitor"))


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class MonitorStack:
    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite:///{folder / 'fleet.db'}"
        self.folder = folder
        self.env = {
            "FLEET__BROKER_URL": url,
            "FLEET__STATE_URL": url,
            "FLEET__HEARTBEAT_INTERVAL": "0.5",
            "FLEET__LOG_LEVEL": "INFO",
        }
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MONITOR_LATE", "1")  # the producer knows every task
        self.tasks: ModuleType = importlib.reload(importlib.import_module("examples.monitor_tasks"))
        self.workers: list[WorkerCommand] = []
        self.monitors: list[ManagedProcess] = []

    @property
    def app(self) -> Any:
        return self.tasks.app

    def worker(self, late: bool = False) -> WorkerCommand:
        env = {**self.env, "MONITOR_LATE": "1" if late else "0"}
        command = WorkerCommand(APP, processes=1, threads=4, env=env, cwd=str(ROOT)).start()
        self.workers.append(command)
        command.wait_consumers(self.app, 1)
        return command

    def monitor(self, host: str = "127.0.0.1", **env: str) -> tuple[ManagedProcess, str]:
        port = free_port()
        argv = [sys.executable, "-m", "fleet", "monitor", "--app", APP]
        argv += ["--host", host, "--port", str(port)]
        proc = ManagedProcess.start(
            "fleet monitor",
            argv,
            log_path=self.folder / f"monitor-{port}.log",
            env={**os.environ, **self.env, **env},
            cwd=ROOT,
        )
        self.monitors.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: status_of(base + "/") in (200, 401) or proc.returncode is not None)
        assert proc.returncode is None, self.log(proc)
        return proc, base

    @staticmethod
    def log(proc: ManagedProcess) -> str:
        return proc.log_path.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for proc in self.monitors:
            proc.stop()
        for command in self.workers:
            command.stop(timeout=30)
        self.app.close()


@contextmanager
def monitor_stack(folder: Path) -> Iterator[MonitorStack]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        stack = MonitorStack(folder, monkeypatch)
        try:
            yield stack
        finally:
            stack.close()


@contextmanager
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing (scripts/setup.sh installs chromium)")
        pytest.skip(f"{CHROMIUM} missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
