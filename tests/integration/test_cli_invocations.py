"""`fleet invocations list|show|cancel|retry` on the embedded stack with a worker."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from fleet import Status
from fleet.cli import main
from fleet.testing.worker import running_worker

APP = "tests.integration.cli_tasks:app"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    monkeypatch.setenv("FLEET__BROKER_URL", url)
    monkeypatch.setenv("FLEET__STATE_URL", url)
    module = importlib.reload(importlib.import_module("tests.integration.cli_tasks"))
    yield module
    module.app.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["invocations", *argv, "--app", APP])
    return code, capsys.readouterr().out


def test_list_show_and_retry_a_failed_invocation(
    tasks: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_worker(tasks.app):
        failed = tasks.flaky("a")
        with pytest.raises(ValueError, match="first call"):
            failed.result(timeout=30)
        code, out = run(capsys, "list", "--status", "failed", "--since", "1h", "--json")
        assert code == 0
        assert [r["id"] for r in json.loads(out)] == [failed.id]
        code, out = run(capsys, "show", failed.id)
        assert code == 0 and "FAILED" in out and "ValueError: first call for 'a' fails" in out
        code, out = run(capsys, "retry", failed.id)
        assert code == 0, out
        assert tasks.app.invocation(failed.id).result(timeout=30) == "a ok"
    history = [e.status for e in tasks.app.record(failed.id).history]
    assert history[-3:] == [Status.PENDING, Status.RUNNING, Status.SUCCESS]
    assert "retried by an operator (was FAILED)" in [
        e.note for e in tasks.app.record(failed.id).history
    ]
    code, out = run(capsys, "retry", failed.id)
    assert code == 1 and "is SUCCESS; only FAILED or CANCELLED" in out


def test_cancel_then_retry_a_scheduled_invocation(
    tasks: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.calls["b"] = 1  # its first call has "happened": the next one succeeds
    held = tasks.flaky.schedule("b", countdown=3600)
    assert run(capsys, "cancel", held.id)[0] == 0
    assert tasks.app.record(held.id).status is Status.CANCELLED
    code, out = run(capsys, "cancel", held.id)
    assert code == 1 and "already finished" in out
    with running_worker(tasks.app):
        assert run(capsys, "retry", held.id)[0] == 0
        assert tasks.app.invocation(held.id).result(timeout=30) == "b ok"


def test_show_of_an_unknown_id_and_a_bad_status(
    tasks: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "show", "nope")
    assert code == 1 and "no invocation 'nope'" in out
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "list", "--status", "DONE")
    assert exit_info.value.code == 2
    assert "unknown status 'DONE'" in capsys.readouterr().err
