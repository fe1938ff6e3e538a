"""Poison messages on RabbitMQ: garbage bytes and an unknown task, published with plain
pika straight into a task queue, land in the dead-letter queue with their reasons,
and the real `fleet worker` process keeps processing good messages."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pika
import pytest

from fleet._envelope import Envelope, pack
from fleet.cli import main
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import WorkerCommand
from tests.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]
REPO = Path(__file__).parents[2]


@pytest.fixture
def tasks(
    rabbitmq: RabbitMQServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unique_name: Callable[[str], str],
) -> Iterator[ModuleType]:
    queue = unique_name("poison")
    (tmp_path / "queues.yaml").write_text(f"default: {queue}\nqueues:\n  {queue}: {{}}\n")
    for key, value in {
        "FLEET__BROKER_URL": rabbitmq.url,
        "FLEET__STATE_URL": f"sqlite:///{tmp_path}/fleet.db",
        "FLEET__QUEUES_FILE": str(tmp_path / "queues.yaml"),
        "FLEET__HEARTBEAT_INTERVAL": "0.5",
        "FLEET__LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(key, value)
    module = importlib.reload(importlib.import_module("tests.e2e.rabbitmq_tasks"))
    yield module
    module.app.close()


def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(
    rabbitmq: RabbitMQServer, tasks: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = tasks.app.queues.default
    broker = tasks.app.runtime().broker
    unknown = pack(Envelope("0" * 32, "no.such.module.task", b"\x90", "msgpack"))
    with WorkerCommand("tests.e2e.rabbitmq_tasks:app", processes=1, threads=2, cwd=str(REPO)) as w:
        w.wait_consumers(tasks.app, 1, queue=queue)
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            persistent = pika.BasicProperties(delivery_mode=2)
            channel.basic_publish("", queue, b"\x00\xff garbage, not msgpack", persistent)
            channel.basic_publish("", queue, unknown, persistent)
        finally:
            connection.close()
        group = tasks.double.parallelize(range(50))  # good work behind the poison
        assert group.results(timeout=60) == [2 * i for i in range(50)]
        wait_until(lambda: broker.stats(queue).dead >= 2, "the poison messages' dead letters")
        assert tasks.double(21).result(timeout=30) == 42  # the worker still runs
        assert w.process is not None and w.process.poll() is None
    letters = {letter.body: letter for letter in broker.dead_letters(queue)}
    garbage = letters[b"\x00\xff garbage, not msgpack"]
    assert garbage.reason.startswith("message body is not a fleet envelope")
    assert letters[unknown].reason.startswith("unknown task 'no.such.module.task': not registered")
    assert {letter.queue for letter in letters.values()} == {queue}
    stats = broker.stats(queue)
    assert (stats.ready, stats.dead) == (0, 2)
    assert main(["deadletters", "list", queue]) == 0
    out = capsys.readouterr().out
    assert "reason: unknown task 'no.such.module.task'" in out
    assert "undecodable bytes" in out
