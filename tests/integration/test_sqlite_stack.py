"""The embedded SQLite stack end to end, with real worker processes."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from fleet import Status
from fleet.testing.worker import WorkerCommand

pytestmark = pytest.mark.timeout(300)


def load_tasks(monkeypatch: pytest.MonkeyPatch, url: str) -> ModuleType:
    monkeypatch.setenv("FLEET__BROKER_URL", url)
    monkeypatch.setenv("FLEET__STATE_URL", url)
    monkeypatch.setenv("FLEET__HEARTBEAT_INTERVAL", "0.5")
    module = importlib.import_module("tests.integration.stack_tasks")
    return importlib.reload(module)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    url = f"sqlite:///{tmp_path_factory.mktemp('stack') / 'fleet.db'}"
    with pytest.MonkeyPatch.context() as mp:
        tasks = load_tasks(mp, url)
        worker = WorkerCommand(
            "tests.integration.stack_tasks:app",
            processes=2,
            threads=4,
            cwd=str(Path(__file__).parents[2]),
        )
        with worker:
            worker.wait_consumers(tasks.app, 2)
            yield tasks
        tasks.app.close()


def test_eight_caller_threads_times_100_calls(stack: ModuleType) -> None:
    results: dict[int, list[tuple[str, int, int]]] = {}
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            results[n] = [stack.echo(f"t{n}", i) for i in range(100)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors
    for n in range(8):
        assert [(tag, i) for tag, i, _ in results[n]] == [(f"t{n}", i) for i in range(100)]
    pids = {pid for calls in results.values() for _, _, pid in calls}
    assert len(pids) == 2  # both worker processes did work, none of it in this process


def test_value_error_comes_back_as_value_error(stack: ModuleType) -> None:
    invocation = stack.fail("no such report")
    with pytest.raises(ValueError, match="no such report"):
        invocation.result(timeout=30)
    assert invocation.status is Status.FAILED


def test_parallelize_batch(stack: ModuleType) -> None:
    group = stack.square.parallelize(range(300))
    assert group.results(timeout=60) == [x * x for x in range(300)]


def test_fib_on_two_processes(stack: ModuleType) -> None:
    assert stack.fib(12).result(timeout=120) == 144


def test_inline_mode_gives_the_same_values(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    distributed = [stack.square(x).result(timeout=30) for x in range(10)]
    monkeypatch.setenv("FLEET__INLINE", "true")
    from fleet import Fleet

    inline = Fleet()
    square = inline.task(stack.square.func)
    assert [square(x).result() for x in range(10)] == distributed
    assert inline._runtime is None
