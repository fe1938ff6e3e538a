"""Send by name on the embedded SQLite stack, to a real worker process.

The producer here never imports `tests.integration.send_tasks`; the worker does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Fleet
from fleet.testing.worker import WorkerCommand

pytestmark = pytest.mark.timeout(300)
ROOT = str(Path(__file__).parents[2])


def make_thumbnail(image_id: int, width: int = 100) -> str:
    """The producer's stand-in: same name as the worker's task, another import path."""
    raise AssertionError("runs on the worker, never here")


@pytest.fixture(scope="module")
def producer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("send")
    url = f"sqlite:///{folder / 'fleet.db'}"
    queues = folder / "queues.yaml"
    queues.write_text("queues:\n  media:\n    tasks: ['shop.tasks.*']\n")
    env = {"FLEET__BROKER_URL": url, "FLEET__STATE_URL": url, "FLEET__QUEUES_FILE": str(queues)}
    app = Fleet(broker_url=url, state_url=url, queues_file=str(queues))
    worker = WorkerCommand(
        "tests.integration.send_tasks:app",
        threads=2,
        queues=["default", "media"],
        env=env,
        cwd=ROOT,
    )
    with worker:
        worker.wait_consumers(app, 1, "media")
        worker.wait_consumers(app, 1, "default")
        yield app
    app.close()


def test_send_by_name_runs_on_the_worker_routed_by_the_queue_file(producer: Fleet) -> None:
    invocation = producer.send("shop.tasks.make_thumbnail", 42, width=800)
    value = invocation.result(timeout=60)
    assert value.startswith("thumb-42-800-")
    assert value != f"thumb-42-800-{os.getpid()}"
    assert producer.record(invocation.id).queue == "media"
    assert producer.send("tests.integration.send_tasks.add", 2, 3).result(timeout=60) == 5
    assert "tests.integration.send_tasks" not in sys.modules


def test_name_option_joins_producer_and_worker_paths(producer: Fleet) -> None:
    stub = producer.task(name="shop.tasks.make_thumbnail")(make_thumbnail)
    assert stub(7).result(timeout=60).startswith("thumb-7-100-")
