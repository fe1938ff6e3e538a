"""`fleet check`: what it judges, and a configuration error is not "unknown"."""

from __future__ import annotations

import pytest

from fleet.cli import main
from fleet.cli.inspect import judge
from fleet.state import RunnerRecord

NOW = 1_000.0
HORIZON = NOW - 10


def supervisor(name: str, beat: float, children: list[str]) -> RunnerRecord:
    return RunnerRecord(name, "supervisor", "h", 1, beat, info={"children": children})


def child(name: str, beat: float, parent: str, stopped: bool = False) -> RunnerRecord:
    return RunnerRecord(name, "process", "h", 2, beat, parent=parent, stopped=stopped)


def test_judges_the_live_supervisor_and_its_current_children() -> None:
    runners = [
        supervisor("old", NOW - 500, ["old-0"]),  # killed with its container long ago
        child("old-0", NOW - 500, "old"),
        supervisor("new", NOW - 1, ["new-1"]),
        child("new-0", NOW - 60, "new", stopped=True),  # SIGKILLed, marked by "new"
        child("new-1", NOW - 1, "new"),
    ]
    assert judge(runners, "h", HORIZON, NOW) == ([], 2)


def test_a_stale_current_child_or_one_not_reported_is_unhealthy() -> None:
    stale = [supervisor("s", NOW, ["c"]), child("c", NOW - 60, "s")]
    problems, _ = judge(stale, "h", HORIZON, NOW)
    assert problems == ["c last beat 60.0s ago"]
    missing, _ = judge([supervisor("s", NOW, ["c"])], "h", HORIZON, NOW)
    assert missing == ["c has not reported yet"]
    assert judge([supervisor("s", NOW - 60, [])], "h", HORIZON, NOW)[0]
    starting = RunnerRecord("s", "supervisor", "h", 1, NOW, info={"processes": 1, "children": []})
    assert judge([starting], "h", HORIZON, NOW)[0] == ["s (starting) has not reported yet"]
    assert judge([], "h", HORIZON, NOW)[0]


def test_check_exits_nonzero_on_a_bad_state_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET__STATE_URL", "mongodb://127.0.0.1:notaport/fleet")
    monkeypatch.setenv("FLEET__BROKER_URL", "memory://check-config-error")
    assert main(["check"]) == 3  # a configuration error
    assert "notaport" in capsys.readouterr().err
