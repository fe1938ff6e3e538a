"""`fleet triggers ...` and the triggers of `fleet status`, on the memory stack."""

from __future__ import annotations

import uuid

import pytest

from fleet import Fleet, Trigger
from fleet.cli import main

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet("cli-triggers", broker_url=URL, state_url=URL)
APP = f"{__name__}:app"


@app.task
def extract(n: int) -> int:
    return n


@app.task(
    triggers=[
        Trigger.cron("*/5 * * * *", name="every-5", kwargs={"rows": 0}),
        Trigger.on_result(extract, derive={"rows": "result"}),
    ]
)
def load(rows: int) -> None: ...


@app.task(triggers=[Trigger.on_event("e", derive={"rows": "payload.rows"}, name="needs-rows")])
def strict(rows: int) -> None: ...


def cron_id() -> str:
    (found,) = app.triggers.list(kind="cron")
    return found.id


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["triggers", *argv, "--app", APP])
    return code, capsys.readouterr().out


def test_list_shows_every_declared_trigger(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert any("cron '*/5 * * * *'" in line and line.endswith(f"-> {load.name}") for line in lines)
    assert any("result" in line and "active" in line for line in lines)


def test_show_fire_pause_resume_delete(capsys: pytest.CaptureFixture[str]) -> None:
    tid = cron_id()
    code, out = run(capsys, "show", tid)
    assert code == 0 and "next: " in out and "firings (0 shown" in out

    code, out = run(capsys, "fire", tid)
    assert code == 0 and "started " in out
    started = out.split("started ")[1].strip()
    assert app.record(started).task == load.name
    code, out = run(capsys, "show", tid)
    assert f"-> {started}  started" in out and "manual" in out

    code, out = run(capsys, "pause", tid)
    assert code == 0 and "paused" in out
    code, out = run(capsys, "show", tid)
    assert "next: " not in out  # a paused trigger has no next time
    code, out = run(capsys, "resume", tid)
    assert code == 0 and "active" in out

    code, out = run(capsys, "delete", tid)
    assert (code, out.strip()) == (0, f"{tid}: deleted")
    code, out = run(capsys, "delete", tid)
    assert code == 1 and "no such trigger" in out
    app.triggers.declare(load.name, load.options.extensions["triggers"])  # for the others


def test_fire_reports_a_call_that_cannot_be_built(capsys: pytest.CaptureFixture[str]) -> None:
    (event,) = app.triggers.list(kind="event")
    code, out = run(capsys, "fire", event.id)
    assert code == 1 and "started nothing" in out and "rows" in out


def test_an_unknown_id_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["triggers", "show", "tr-nope", "--app", APP]) == 1
    err = capsys.readouterr().err
    assert "tr-nope" in err and len(err.strip().splitlines()) == 1


def test_status_shows_next_cron_time_and_last_firing(capsys: pytest.CaptureFixture[str]) -> None:
    app.triggers.fire(cron_id())
    assert main(["status", "--app", APP]) == 0
    out = capsys.readouterr().out
    triggers = out.split("triggers:\n", 1)[1]
    assert "next " in triggers and "last " in triggers and "never fired" in triggers


def test_fleet_tasks_counts_the_triggers_declared_on_a_task(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tasks", "--app", APP]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.split() and line.split()[0] == load.name]
    assert "triggers=2" in line
