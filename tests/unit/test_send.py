"""Sending by name without importing the task, and the `name=` task option."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from fleet import Fleet, TaskDefinitionError, UnknownTaskError
from fleet.testing.worker import running_worker


def thumbnail(image_id: int, width: int = 100) -> str:
    return f"thumb-{image_id}-{width}"


def memory_app(**settings: object) -> Fleet:
    url = f"memory://{uuid.uuid4().hex}"
    return Fleet(broker_url=url, state_url=url, **settings)


@pytest.fixture
def queues_file(tmp_path: Path) -> str:
    path = tmp_path / "queues.yaml"
    path.write_text("queues:\n  media:\n    tasks: ['shop.tasks.*']\n  other: {}\n")
    return str(path)


def test_send_routes_an_unknown_name_by_the_queue_patterns(queues_file: str) -> None:
    app = memory_app(queues_file=queues_file)
    invocation = app.send("shop.tasks.make_thumbnail", 42, width=800)
    record = app.record(invocation.id)
    assert record.task == invocation.task == "shop.tasks.make_thumbnail"
    assert record.queue == "media"
    assert app.record(app.send("shop.other.job").id).queue == "default"
    assert app.record(app.send("shop.tasks.x", queue="other").id).queue == "other"
    app.close()


def test_send_to_an_undefined_queue_is_refused(queues_file: str) -> None:
    app = memory_app(queues_file=queues_file)
    with pytest.raises(TaskDefinitionError, match=r"'otehr' is not defined.*'other'"):
        app.send("shop.tasks.x", queue="otehr")
    app.close()


def test_send_of_a_registered_task_checks_its_signature_and_runs() -> None:
    app = memory_app()
    task = app.task(name="shop.tasks.make_thumbnail")(thumbnail)
    assert task.name == "shop.tasks.make_thumbnail"
    with pytest.raises(TypeError, match="make_thumbnail"):
        app.send("shop.tasks.make_thumbnail", 1, 2, 3)
    with running_worker(app, threads=1):
        assert app.send("shop.tasks.make_thumbnail", 7, width=50).result(timeout=10) == (
            "thumb-7-50"
        )
        assert task(8).result(timeout=10) == "thumb-8-100"
    app.close()


def test_send_in_inline_mode() -> None:
    app = Fleet(inline=True, broker_url="memory://never", state_url="memory://never")
    app.task(name="shop.tasks.make_thumbnail")(thumbnail)
    assert app.send("shop.tasks.make_thumbnail", 3).result() == "thumb-3-100"
    with pytest.raises(UnknownTaskError, match=r"shop\.tasks\.missing"):
        app.send("shop.tasks.missing", 3)
    assert app._runtime is None


def test_bad_names_are_refused() -> None:
    app = memory_app()
    with pytest.raises(TaskDefinitionError, match="name"):
        app.task(name="")(thumbnail)
    with pytest.raises(TaskDefinitionError, match="name"):
        app.task(name=3)(thumbnail)
    with pytest.raises(TaskDefinitionError, match="'nodots'"):
        app.send("nodots")
