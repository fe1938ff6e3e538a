"""A `fleet worker` given no --queues consumes the default queue and the queues its
app's tasks route to, not every defined queue."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from fleet.testing.worker import WorkerCommand
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded stack in `tmp_path` with queues default, cpu and idle (FLEET__*)."""
    queues = tmp_path / "queues.yaml"
    queues.write_text("queues:\n  default: {}\n  cpu: {}\n  idle: {}\n")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    monkeypatch.setenv("FLEET__BROKER_URL", url)
    monkeypatch.setenv("FLEET__STATE_URL", url)
    monkeypatch.setenv("FLEET__QUEUES_FILE", str(queues))
    monkeypatch.setenv("FLEET__HEARTBEAT_INTERVAL", "0.5")
    return tmp_path


def worker() -> WorkerCommand:
    return WorkerCommand("tests.integration.queue_tasks:app", cwd=str(Path(__file__).parents[2]))


def test_worker_without_queues_consumes_where_the_tasks_route(embedded: Path) -> None:
    tasks = importlib.reload(importlib.import_module("tests.integration.queue_tasks"))
    app = tasks.app
    with worker() as command:
        command.wait_consumers(app, 1, queue="cpu")
        assert tasks.crunch(14).result(timeout=60) == 42
        broker = app.runtime().broker
        assert broker.stats("idle").consumers == 0
        state = app.runtime().state
        wait_until(lambda: any(r.kind == "supervisor" for r in state.runners()), "a heartbeat", 30)
        (supervisor,) = [r for r in state.runners() if r.kind == "supervisor"]
        assert supervisor.queues == ("default", "cpu")
    app.close()


def test_worker_without_queues_consumes_the_queues_of_task_modules(
    embedded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks registered by `task_modules` count when the worker works out its queues:
    the supervisor imports them before choosing what to consume."""
    monkeypatch.setenv("FLEET__TASK_MODULES", "tests.integration.queue_extra_tasks")
    tasks = importlib.reload(importlib.import_module("tests.integration.queue_tasks"))
    extra = importlib.reload(importlib.import_module("tests.integration.queue_extra_tasks"))
    with worker() as command:
        command.wait_consumers(tasks.app, 1, queue="idle")
        assert extra.nap(7).result(timeout=60) == 7
    tasks.app.close()
