"""Credentials as operators provide them: a `fleet worker` on a real RabbitMQ whose URL
has no credentials, with the user name and password in separate files (the keys of an
operator-made Secret mounted as files). It logs in with them, and no secret is in the
environment of the task code it runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet import Fleet
from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import WorkerCommand
from tests.integration.test_probes import ctl

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]
APP = "tests.integration.secret_tasks:app"


def test_worker_logs_in_with_file_credentials_and_tasks_never_see_them(
    rabbitmq: RabbitMQServer,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = f"ops-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}/:@?"
    ctl(rabbitmq, "add_user", user, password)
    ctl(rabbitmq, "set_permissions", "-p", "/", user, ".*", ".*", ".*")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "username").write_text(user + "\n")
    (secrets / "password").write_text(password + "\n")
    queue = unique_name("secrets")
    (tmp_path / "queues.yaml").write_text(f"default: {queue}\nqueues:\n  {queue}: {{}}\n")
    env = {
        "FLEET__BROKER_URL": f"amqp://127.0.0.1:{rabbitmq.port}/%2F",
        "FLEET__BROKER_USERNAME_FILE": str(secrets / "username"),
        "FLEET__BROKER_PASSWORD_FILE": str(secrets / "password"),
        "FLEET__STATE_URL": f"sqlite:///{tmp_path / 'fleet.db'}",
        "FLEET__QUEUES_FILE": str(tmp_path / "queues.yaml"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    producer = Fleet()
    try:
        assert f"{user}:" in producer.settings.broker_url  # composed from the files
        with WorkerCommand(APP, env=env) as worker:
            worker.wait_consumers(producer, 1, queue)
            seen = producer.send("tests.integration.secret_tasks.environment").result(timeout=60)
    finally:
        producer.close()
    assert seen["FLEET__BROKER_PASSWORD_FILE"] == str(secrets / "password")
    leaked = [k for k, v in seen.items() if password in v or f"{user}:" in v]
    assert leaked == []
