"""Fixtures for e2e tests of the worker runtime: a fresh stack per test, fast recovery."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from fleet import Status
from fleet.testing.worker import WorkerCommand

ROOT = Path(__file__).parents[2]
APP = "tests.e2e.recovery_tasks:app"
FAST = {
    "FLEET__HEARTBEAT_INTERVAL": "0.5",
    "FLEET__DEAD_AFTER": "3",
    "FLEET__RECOVERY_INTERVAL": "0.5",
    "FLEET__SCHEDULE_INTERVAL": "0.2",
    "FLEET__LEASE_TTL": "2",
    "FLEET__LOG_LEVEL": "INFO",
}


@dataclass
class Stack:
    tasks: ModuleType
    env: dict[str, str]
    marks: Path
    workers: list[WorkerCommand] = field(default_factory=list)

    def worker(self, processes: int = 1, threads: int = 3, **env: str) -> WorkerCommand:
        command = WorkerCommand(
            APP, processes=processes, threads=threads, env={**self.env, **env}, cwd=str(ROOT)
        )
        self.workers.append(command.start())
        return command

    def statuses(self, invocations: list[object]) -> list[Status]:
        return [inv.status for inv in invocations]  # type: ignore[attr-defined]

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for command in self.workers:
                process = command.process
                assert (
                    process is None or process.poll() is None or process.returncode in (0, -9, -15)
                ), f"a worker died unexpectedly ({process.returncode})"
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)


STACKS = ["sqlite", "rabbitmq+mongo"]


def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Settings that point a test's app and workers at a stack of its own."""
    queues = tmp_path / "queues.yaml"
    queues.write_text("queues: {}\n")
    env = {"FLEET__QUEUES_FILE": str(queues)}
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
        return {**env, "FLEET__BROKER_URL": url, "FLEET__STATE_URL": url}
    server = request.getfixturevalue("rabbitmq")  # private RabbitMQ (tests/conftest.py)
    name = request.getfixturevalue("unique_name")("e2e")
    return {
        **env,
        "FLEET__BROKER_URL": server.url,
        "FLEET__STATE_URL": request.getfixturevalue("mongo_db_url"),
        "FLEET__NAME": name,  # own lease and notification names on the shared server
        "FLEET__DEFAULT_QUEUE": name,  # own queue on the shared server
    }


def open_stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    settings: Mapping[str, str] = FAST,
) -> Iterator[Stack]:
    """A stack over the tasks of `module` (reloaded under this test's FLEET__* settings);
    its workers are stopped and its app closed when the test ends."""
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**backend_env(request, tmp_path), "FLEET_TEST_MARKS": str(marks), **settings}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    tasks = importlib.reload(importlib.import_module(module))
    stack = Stack(tasks, env, marks)
    try:
        yield stack
    finally:
        for command in stack.workers:
            command.stop(timeout=30)
        tasks.app.close()


@pytest.fixture(params=STACKS)
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    yield from open_stack(request, tmp_path, monkeypatch, "tests.e2e.recovery_tasks")
