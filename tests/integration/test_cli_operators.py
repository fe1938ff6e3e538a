"""Operator commands on the embedded stack: `fleet status --json`, `fleet queues status
--json`, `fleet queues purge` (asks, refuses without a terminal, `--yes`),
`fleet deadletters list --json`, and the connection error's cause."""

from __future__ import annotations

import importlib
import io
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from fleet.cli import EXIT_CONFIG, EXIT_CONNECTION, EXIT_USAGE, main
from fleet.testing.worker import WorkerCommand, running_worker

APP = "tests.integration.cli_tasks:app"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    monkeypatch.setenv("FLEET__BROKER_URL", url)
    monkeypatch.setenv("FLEET__STATE_URL", url)
    module = importlib.reload(importlib.import_module("tests.integration.cli_tasks"))
    yield module
    module.app.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--app", APP])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_and_queue_status_as_json(
    tasks: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {k: os.environ[k] for k in ("FLEET__BROKER_URL", "FLEET__STATE_URL")}
    with WorkerCommand(APP, env=env) as worker:  # a process of its own: status closes the app
        worker.wait_consumers(tasks.app, 1)
        assert tasks.app.send(tasks.flaky.name, "x").id
        code, out, _ = run(capsys, "status", "--json")
        assert code == 0
        report = json.loads(out)
        assert set(report) == {"invocations", "runners", "queues"}
        assert sum(report["invocations"].values()) >= 1
        assert any(r["kind"] == "process" and r["state"] == "live" for r in report["runners"])
        default = report["queues"]["default"]  # keyed by name
        assert default["defined"] and default["consumers"] >= 1
    code, out, _ = run(capsys, "queues", "status", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == tasks.app.queues.names()  # configs/queues.yaml
    assert {"ready", "unacked", "consumers", "dead", "declared"} <= set(rows[0])


def test_purge_asks_first(
    tasks: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        tasks.app.send(tasks.flaky.name, str(i))  # no worker: they stay ready
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal
    code, _, err = run(capsys, "queues", "purge", "default")
    assert code == EXIT_USAGE and "would drop 3 ready message(s)" in err and "--yes" in err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, out, _ = run(capsys, "queues", "purge", "default")
    assert code == 1 and "nothing dropped" in out
    assert tasks.app.runtime().broker.stats("default").ready == 3
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, _ = run(capsys, "queues", "purge", "default")
    assert code == 0 and "dropped 3 message(s) from default" in out
    assert tasks.app.runtime().broker.stats("default").ready == 0
    tasks.app.send(tasks.flaky.name, "again")
    code, out, _ = run(capsys, "queues", "purge", "default", "--yes")
    assert (code, out.strip()) == (0, "dropped 1 message(s) from default")
    code, _, err = run(capsys, "queues", "purge", "defualt", "--yes")
    assert code == EXIT_CONFIG and "did you mean 'default'" in err


def test_dead_letters_as_json(tasks: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    invocation = tasks.app.send("tests.integration.cli_tasks.no_such_task")
    with running_worker(tasks.app), pytest.raises(Exception, match="no_such_task"):
        invocation.result(timeout=30)
    code, out, _ = run(capsys, "deadletters", "list", "default", "--json")
    assert code == 0
    (letter,) = json.loads(out)
    assert letter["invocation"] == invocation.id
    assert letter["task"] == "tests.integration.cli_tasks.no_such_task"
    assert "no_such_task" in letter["reason"]


def test_an_unreachable_broker_names_the_cause(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("FLEET__BROKER_URL", f"amqp://guest:secret@127.0.0.1:{port}/")
    monkeypatch.setenv("FLEET__CONNECT_TIMEOUT", "2")
    code = main(["queues", "status"])
    err = capsys.readouterr().err
    assert code == EXIT_CONNECTION
    assert f"connection refused (nothing listens on 127.0.0.1:{port}" in err
    assert "secret" not in err


def test_tasks_and_triggers_as_json(tasks: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "tasks", "--json")
    assert code == 0
    listed = json.loads(out)
    assert listed["failed_modules"] == []
    assert {"task": "tests.integration.cli_tasks.flaky", "kind": "Task"}.items() <= next(
        t for t in listed["tasks"] if t["task"].endswith(".flaky")
    ).items()
    from fleet import Trigger

    added = tasks.app.triggers.add(tasks.flaky, Trigger.cron("0 3 * * *", name="nightly"))
    code, out, _ = run(capsys, "triggers", "list", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row == {
        "id": added.id,
        "name": "nightly",
        "kind": "cron",
        "cron": "0 3 * * *",
        "task": "tests.integration.cli_tasks.flaky",
        "enabled": True,
        "declared": False,
    }
