"""`fleet probe live|ready` against a real `fleet worker` on RabbitMQ: ready once its
consumer is attached, not ready while its consumer keeps failing (its RabbitMQ user
deleted: connections closed and refused), ready again once the user is back; not live
once the supervisor stops beating (SIGSTOP), live again after SIGCONT. The probes run
as the kubelet runs them: a process of their own, without the app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.testing.rabbitmq import RabbitMQServer
from fleet.testing.worker import WorkerCommand
from tests.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]
APP = "tests.integration.cli_tasks:app"


PASSWORD = "probe-password"


def ctl(server: RabbitMQServer, *args: str) -> None:
    """rabbitmqctl against the test node (the script itself: the Debian wrapper would
    switch to the rabbitmq user's home and cookie)."""
    done = subprocess.run(
        ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", server.node_name, *args],
        env=server._prepare(),  # the node's own environment (cookie, epmd port)
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def add_user(server: RabbitMQServer, user: str) -> None:
    ctl(server, "add_user", user, PASSWORD)
    ctl(server, "set_permissions", "-p", "/", user, ".*", ".*", ".*")


def probe(kind: str, folder: Path, max_age: float = 5.0) -> tuple[int, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet",
            "probe",
            kind,
            "--dir",
            str(folder),
            "--max-age",
            str(max_age),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEET__")},
    )
    return done.returncode, done.stdout + done.stderr


def test_probes_follow_the_supervisor_and_the_consumers(
    rabbitmq: RabbitMQServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    queue = unique_name("probed")
    user = f"probe-{uuid.uuid4().hex[:8]}"
    add_user(rabbitmq, user)
    (tmp_path / "queues.yaml").write_text(f"default: {queue}\nqueues:\n  {queue}: {{}}\n")
    health = tmp_path / "health"
    env = {
        "FLEET__BROKER_URL": rabbitmq.url.replace("guest:guest@", f"{user}:{PASSWORD}@"),
        "FLEET__STATE_URL": f"sqlite:///{tmp_path / 'fleet.db'}",
        "FLEET__QUEUES_FILE": str(tmp_path / "queues.yaml"),
        "FLEET__HEALTH_DIR": str(health),
        "FLEET__HEARTBEAT_INTERVAL": "0.3",
    }
    assert probe("live", health)[0] == 1  # nothing started yet
    with WorkerCommand(APP, processes=2, env=env) as worker:
        wait_until(lambda: probe("ready", health)[0] == 0, "the worker to be ready", timeout=60)
        assert probe("live", health) == (0, "live\n")

        ctl(rabbitmq, "delete_user", user)  # RabbitMQ closes its connections, refuses new ones
        wait_until(lambda: probe("ready", health)[0] == 1, "not ready", timeout=60)
        code, out = probe("ready", health)
        assert code == 1 and "is not consuming" in out, out
        assert probe("live", health)[0] == 0  # alive all along: no restart wanted

        add_user(rabbitmq, user)
        wait_until(lambda: probe("ready", health)[0] == 0, "ready again", timeout=60)

        os.kill(worker.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: probe("live", health, 1.0)[0] == 1, "not live", timeout=30)
            assert "last beat" in probe("live", health, 1.0)[1]
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        wait_until(lambda: probe("live", health, 1.0)[0] == 0, "live again", timeout=30)
