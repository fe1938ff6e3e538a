"""RabbitMQ queues from YAML, declaration mismatches, dead letters, and connection
settings, against a real RabbitMQ node started by the fixtures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pika
import pytest

from fleet.broker import Delivery, Message
from fleet.broker.rabbitmq import RabbitMQBroker
from fleet.cli import main
from fleet.errors import BrokerError, ConfigError, QueueMismatchError
from fleet.queues import QueueSpec, load_queues
from fleet.testing.rabbitmq import RabbitMQServer
from tests.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]


@pytest.fixture
def broker(rabbitmq: RabbitMQServer) -> Iterator[RabbitMQBroker]:
    broker = RabbitMQBroker(rabbitmq.url)
    yield broker
    broker.close()


def take(consumer: object, n: int, timeout: float = 10.0) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += consumer.receive(n - len(got), max(0.0, deadline - time.monotonic()))  # type: ignore[attr-defined]
    return got


def write_queues(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- declaration ------------------------------------------------------------------------


def test_yaml_queues_are_declared_with_their_arguments(
    broker: RabbitMQBroker,
    rabbitmq: RabbitMQServer,
    tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    jobs, prio = unique_name("jobs"), unique_name("prio")
    table = load_queues(
        write_queues(
            tmp_path / "queues.yaml",
            f"default: {jobs}\n"
            "queues:\n"
            f"  {jobs}: {{delivery_limit: 3, message_ttl: 60, max_length: 100}}\n"
            f"  {prio}: {{type: classic, max_priority: 5, dead_letter: false}}\n",
        )
    )
    broker.declare(list(table.queues))
    broker.declare(list(table.queues))  # idempotent
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
    try:
        channel = connection.channel()
        for name in (jobs, f"{jobs}.urgent", f"{jobs}.dead", prio, f"{prio}.urgent"):
            channel.queue_declare(name, passive=True)  # raises if missing
        channel.exchange_declare(f"{jobs}.dlx", passive=True)
        # The same arguments pass; an unknown-to-RabbitMQ difference would not.
        channel.queue_declare(
            jobs,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": 2,
                "x-dead-letter-exchange": f"{jobs}.dlx",
                "x-message-ttl": 60000,
                "x-max-length": 99,
                "x-overflow": "reject-publish",
                "x-dead-letter-strategy": "at-least-once",
            },
        )
        channel.queue_declare(
            prio, durable=True, arguments={"x-queue-type": "classic", "x-max-priority": 5}
        )
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            channel.exchange_declare(f"{prio}.dlx", passive=True)
    finally:
        connection.close()


def test_mismatch_names_every_difference_and_what_to_do(
    broker: RabbitMQBroker, rabbitmq: RabbitMQServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("q")
    broker.declare([QueueSpec(name, delivery_limit=5)])
    other = RabbitMQBroker(rabbitmq.url)
    try:
        with pytest.raises(QueueMismatchError) as caught:
            other.declare([QueueSpec(name, delivery_limit=7, message_ttl=60)])
    finally:
        other.close()
    text = str(caught.value)
    assert f"queue {name!r}" in text
    assert (
        "delivery_limit: configured 7, on the broker 5 (RabbitMQ argument x-delivery-limit" in text
    )
    assert "message_ttl: configured 60.0, on the broker nothing (absent)" in text
    assert "PRECONDITION_FAILED" not in text
    assert "change the queue's settings" in text and "delete_queue" in text
    broker.declare([QueueSpec(name, delivery_limit=5)])  # the broker still works


def test_quorum_queue_refuses_reject_publish_dlx(
    broker: RabbitMQBroker, unique_name: Callable[[str], str]
) -> None:
    # Refused when the spec is built (the queues file is read), before any declare.
    with pytest.raises(ConfigError, match="reject-publish-dlx"):
        broker.declare([QueueSpec(unique_name("q"), max_length=2, overflow="reject-publish-dlx")])


def test_cli_declares_and_shows_status(
    rabbitmq: RabbitMQServer,
    broker: RabbitMQBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("cli")
    queues = write_queues(tmp_path / "queues.yaml", f"default: {name}\nqueues:\n  {name}: {{}}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEET__BROKER_URL", rabbitmq.url)
    monkeypatch.setenv("FLEET__STATE_URL", f"sqlite:///{tmp_path}/fleet.db")
    monkeypatch.setenv("FLEET__QUEUES_FILE", str(queues))
    assert main(["queues", "declare"]) == 0
    assert f"declared {name} (quorum" in capsys.readouterr().out
    broker.publish([Message(name, b"x", f"i{n}") for n in range(3)])
    with closing(broker.consumer([name], prefetch=1)) as consumer:
        (got,) = take(consumer, 1)
        consumer.dead_letter(got, "testing")
        assert main(["queues", "status"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(name))
    assert row.split()[1:] == ["2", "-", "1", "1"]  # ready, unacked (unknown), consumers, dead
    # A clashing YAML gives one clear line and exit status 3 (configuration), not a traceback.
    write_queues(queues, f"default: {name}\nqueues:\n  {name}: {{type: classic}}\n")
    assert main(["queues", "declare"]) == 3
    err = capsys.readouterr().err
    assert "type: configured 'classic', on the broker 'quorum'" in err


def test_undefined_queues_are_never_declared_and_undeclared_ones_are_flagged(
    rabbitmq: RabbitMQServer,
    broker: RabbitMQBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unique_name: Callable[[str], str],
) -> None:
    from fleet import Fleet

    name = unique_name("cpu")
    queues = write_queues(tmp_path / "queues.yaml", f"default: {name}\nqueues:\n  {name}: {{}}\n")
    monkeypatch.setenv("FLEET__BROKER_URL", rabbitmq.url)
    monkeypatch.setenv("FLEET__STATE_URL", f"sqlite:///{tmp_path}/fleet.db")
    monkeypatch.setenv("FLEET__QUEUES_FILE", str(queues))
    assert main(["status"]) == 0  # configured, not declared yet
    row = next(line for line in capsys.readouterr().out.splitlines() if name in line)
    assert "unacked -" in row and "not declared on the broker" in row
    with Fleet() as app:
        app.runtime().declare([name + "u"])  # a typo: refused, logged, not created
        assert broker.stats(name + "u").declared is False
        app.runtime().declare([name])
        assert broker.stats(name).declared is True


# -- dead letters -----------------------------------------------------------------------


def test_dead_letters_carry_readable_reasons(
    broker: RabbitMQBroker, rabbitmq: RabbitMQServer, unique_name: Callable[[str], str]
) -> None:
    limited, expiring = unique_name("limited"), unique_name("ttl")
    broker.declare([QueueSpec(limited, delivery_limit=1), QueueSpec(expiring, message_ttl=0.05)])
    broker.publish([Message(limited, b"explicit", "a"), Message(limited, b"poison", "b")])
    broker.publish([Message(expiring, b"late", "c")])
    with closing(broker.consumer([limited], prefetch=2)) as consumer:
        first, second = take(consumer, 2)
        consumer.dead_letter(first, "unknown task 'x.y'")
        consumer.release([second])  # its only delivery: RabbitMQ dead-letters it
    wait_until(
        lambda: broker.stats(limited).dead >= 2 and broker.stats(expiring).dead >= 1,
        "the dead letters",
        10,
    )
    letters = {d.body: d for d in broker.dead_letters(limited)}
    assert letters[b"explicit"].reason == "unknown task 'x.y'"
    assert letters[b"poison"].reason == "delivery limit 1 exceeded"
    assert {d.queue for d in letters.values()} == {limited}
    assert all(d.at > time.time() - 60 for d in letters.values())
    (late,) = broker.dead_letters(expiring)
    assert (late.body, late.reason, late.queue) == (b"late", "expired", expiring)
    # Another process that never declared the queue still gets a readable reason.
    stranger = RabbitMQBroker(rabbitmq.url)
    try:
        reasons = sorted(d.reason for d in stranger.dead_letters(limited))
    finally:
        stranger.close()
    assert reasons == ["delivery limit exceeded", "unknown task 'x.y'"]


def test_cli_lists_requeues_and_purges_dead_letters(
    rabbitmq: RabbitMQServer,
    broker: RabbitMQBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("dl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEET__BROKER_URL", rabbitmq.url)
    monkeypatch.setenv("FLEET__STATE_URL", f"sqlite:///{tmp_path}/fleet.db")
    broker.publish([Message(name, b"\x00garbage", "g1"), Message(name, b"more", "g2")])
    with closing(broker.consumer([name], prefetch=2)) as consumer:
        for delivery in take(consumer, 2):
            consumer.dead_letter(delivery, "undecodable")
    assert main(["deadletters", "list", name]) == 0
    out = capsys.readouterr().out
    assert out.count("reason: undecodable") == 2 and "undecodable bytes" in out
    first_id = out.split()[0]
    assert main(["deadletters", "requeue", name, "--id", first_id]) == 0
    assert "requeued 1 dead letter(s)" in capsys.readouterr().out
    assert broker.stats(name).ready == 1
    assert main(["deadletters", "purge", name]) == 0
    assert "purged 1 dead letter(s)" in capsys.readouterr().out
    assert broker.stats(name).dead == 0


# -- connection settings ----------------------------------------------------------------


def test_wrong_credentials_never_leak(
    rabbitmq: RabbitMQServer, caplog: pytest.LogCaptureFixture, unique_name: Callable[[str], str]
) -> None:
    secret = "s3cr3t-Pa55word"
    url = f"amqp://guest:{secret}@127.0.0.1:{rabbitmq.port}/%2F?heartbeat=10"
    caplog.set_level(logging.DEBUG)
    broker = RabbitMQBroker(url, publish_retries=1, publish_timeout=2)
    try:
        assert secret not in broker.url and secret not in repr(broker)
        errors: list[str] = []
        for call in (
            lambda: broker.publish([Message(unique_name("q"), b"x", "i")]),
            lambda: broker.stats("whatever"),
            lambda: broker.consumer(["whatever"], prefetch=1),
            lambda: broker.declare([QueueSpec(unique_name("q"))]),
        ):
            with pytest.raises(BrokerError) as caught:
                call()
            errors.append(f"{caught.value!r} {caught.value} {caught.value.__cause__!r}")
    finally:
        broker.close()
    assert any("ACCESS_REFUSED" in e or "authentication" in e.lower() for e in errors), errors
    for text in [*errors, caplog.text]:
        assert secret not in text
        assert secret.replace("-", "%2D") not in text


def test_url_options_and_tls_settings(rabbitmq: RabbitMQServer, tmp_path: Path) -> None:
    url = (
        f"amqp://guest:guest@127.0.0.1:{rabbitmq.port}/%2F?heartbeat=7&publish_timeout=3"
        "&publish_retries=2&handoff_after=0.5&frame_max=65536"
    )
    broker = RabbitMQBroker(url, publish_timeout=9, connect_timeout=4)
    try:
        assert broker.endpoint.params.heartbeat == 7
        assert broker.endpoint.params.frame_max == 65536
        assert (broker.options.publish_timeout, broker.options.connect_timeout) == (3.0, 4.0)
        assert (broker.options.publish_retries, broker.options.handoff_after) == (2, 0.5)
        assert broker.stats("nothing-here").ready == 0  # connects; does not create
    finally:
        broker.close()
    tls = RabbitMQBroker(
        "amqps://u:p%40ss@rabbit.example:5671/prod?verify=false&server_hostname=mq"
    )
    assert tls.url == "amqps://u:***@rabbit.example:5671/prod?verify=false&server_hostname=mq"
    assert tls.endpoint.params.virtual_host == "prod"
    assert tls.endpoint.params.credentials.password == "p@ss"
    assert tls.endpoint.params.ssl_options.server_hostname == "mq"
    tls.close()
    for bad, match in (
        ("amqp://h/?cafile=/x.pem", "need an amqps"),
        ("amqps://h/?cafile=" + str(tmp_path / "missing.pem"), "TLS files"),
        ("amqp://h/?no_such=1", "no_such"),
        ("amqp://h/?publish_retries=zero", "publish_retries"),
    ):
        with pytest.raises(ConfigError, match=match):
            RabbitMQBroker(bad)
