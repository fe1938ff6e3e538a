"""Untrusted queue input and task modules on the embedded stack, with real processes:
a `fleet worker` imports what its settings list and nothing a message names, and
`fleet tasks` shows what it would run (or why it cannot)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from fleet import Fleet, Status
from fleet.codec import encode_call
from fleet.testing.worker import WorkerCommand
from tests.unit.test_untrusted_input import _final, _reason, _submit_raw

pytestmark = pytest.mark.timeout(300)


@dataclass
class Project:
    folder: Path
    env: dict[str, str]
    app: str
    tasks: str
    broken: str
    evil: str

    def fleet(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleet", *args],
            cwd=self.folder,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """An app module, a task module listed in `task_modules`, one listed that fails to
    import (a dependency missing), and one that records being imported."""
    tag = uuid.uuid4().hex[:8]
    app, tasks, broken, evil = (f"{kind}_{tag}" for kind in ("shop", "jobs", "broken", "evil"))
    (tmp_path / f"{app}.py").write_text(
        "from fleet import Fleet\napp = Fleet()\n\n"
        "@app.task(max_retries=2)\ndef double(x: int) -> int:\n    return 2 * x\n"
    )
    (tmp_path / f"{tasks}.py").write_text(
        f"from {app} import app\n\n@app.task\ndef triple(x: int) -> int:\n    return 3 * x\n"
    )
    (tmp_path / f"{broken}.py").write_text(
        f"import no_such_dependency_xyz\nfrom {app} import app\n\n"
        "@app.task\ndef upload(x: int) -> int:\n    return x\n"
    )
    marker = tmp_path / "evil.imported"
    (tmp_path / f"{evil}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
    )
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = {
        "FLEET__BROKER_URL": url,
        "FLEET__STATE_URL": url,
        "FLEET__TASK_MODULES": f"{tasks},{broken}",
        "FLEET__HEARTBEAT_INTERVAL": "0.5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Project(tmp_path, env, app, tasks, broken, evil)
    for name in (app, tasks):
        sys.modules.pop(name, None)


def _import(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_worker_runs_registered_tasks_and_dead_letters_what_it_must_not_import(
    project: Project,
) -> None:
    shop, jobs = _import(project.app), _import(project.tasks)
    app: Fleet = shop.app
    args = encode_call(app.codec, "x", (1,), {})
    with WorkerCommand(f"{project.app}:app", env=project.env, cwd=str(project.folder)) as w:
        w.wait_consumers(app, 1)
        assert shop.double(4).result(timeout=60) == 8
        assert jobs.triple(4).result(timeout=60) == 12  # from the setting task_modules
        evil_id, evil_body = _submit_raw(app, f"{project.evil}.payload", project.evil, args)
        broken_id, broken_body = _submit_raw(app, f"{project.broken}.upload", project.broken, args)
        json_id, json_body = _submit_raw(app, f"{project.app}.double", project.app, args, "json")
        records = {i: _final(app, i) for i in (evil_id, broken_id, json_id)}
        assert shop.double(5).result(timeout=60) == 10  # the worker goes on
    assert not (project.folder / "evil.imported").exists()  # never imported
    assert _reason(app, evil_body).startswith(
        f"unknown task '{project.evil}.payload': not registered on this worker"
    )
    assert _reason(app, broken_body) == (
        f"unknown task '{project.broken}.upload': its module '{project.broken}' failed to "
        "import on this worker: ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
    )
    assert _reason(app, json_body) == (
        f"message {json_id} is encoded with codec 'json', but this worker's setting `codec` "
        "is 'msgpack'"
    )
    assert {r.status for r in records.values()} == {Status.FAILED}
    broken_error = records[broken_id].error
    assert broken_error is not None and "import no_such_dependency_xyz" in broken_error.traceback
    app.close()


def test_fleet_tasks_lists_tasks_and_shows_import_errors(project: Project) -> None:
    done = project.fleet("tasks", "--app", f"{project.app}:app")
    assert done.returncode == 1, done.stderr  # a listed task module does not import
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["task", "kind", "queue", "options"]
    assert lines[1].split() == [f"{project.tasks}.triple", "Task", "default", "-"]
    assert lines[2].split() == [f"{project.app}.double", "Task", "default", "max_retries=2"]
    assert lines[3] == "2 task(s) in app 'fleet'"
    assert f"task module '{project.broken}' failed to import" in done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in done.stderr

    project.env["FLEET__TASK_MODULES"] = project.tasks
    ok = project.fleet("tasks", "--app", f"{project.app}:app")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""


def test_fleet_tasks_fails_with_the_traceback_when_the_app_does_not_import(
    project: Project,
) -> None:
    done = project.fleet("tasks", "--app", f"{project.broken}:app")
    assert done.returncode == 3  # the app does not load: configuration
    assert done.stdout == ""
    assert "Traceback (most recent call last)" in done.stderr
    assert "import no_such_dependency_xyz" in done.stderr  # the line that failed
    assert done.stderr.rstrip().splitlines()[-1] == (
        f"fleet tasks: --app '{project.broken}:app' does not load: --app "
        f"'{project.broken}:app': cannot import '{project.broken}': No module named "
        "'no_such_dependency_xyz'"
    )
