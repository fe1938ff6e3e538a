"""The `fleet` entry point itself."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import fleet
from fleet.cli import EXIT_CONFIG, EXIT_CONNECTION, EXIT_FAILED, exit_code, main
from fleet.errors import (
    ConfigError,
    FleetError,
    InvocationNotFoundError,
    LinkError,
    QueueMismatchError,
    SerializationError,
    StateError,
    TaskDefinitionError,
    TriggerNotFoundError,
)


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"fleet {version}" == f"fleet {fleet.__version__}"


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for line in ("0  done", "1  the command ran", "2  the command line", "3  a configuration"):
        assert line in out
    assert "4  the broker or the state store cannot be reached" in out


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad setting"), EXIT_CONFIG),
        (TaskDefinitionError("bad option"), EXIT_CONFIG),
        (QueueMismatchError("clash"), EXIT_CONFIG),
        (LinkError("connection refused"), EXIT_CONNECTION),
        (StateError("store down"), EXIT_CONNECTION),
        (InvocationNotFoundError("no such id"), EXIT_FAILED),
        (TriggerNotFoundError("no such trigger"), EXIT_FAILED),
        (SerializationError("cannot encode"), EXIT_FAILED),
    ],
)
def test_each_kind_of_error_has_its_exit_status(error: FleetError, code: int) -> None:
    assert exit_code(error) == code


def test_an_unreachable_store_exits_with_the_connection_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET__STATE_URL", "mongodb://127.0.0.1:1/fleet")
    monkeypatch.setenv("FLEET__CONNECT_TIMEOUT", "0.3")
    assert main(["invocations", "list"]) == EXIT_CONNECTION
    assert "127.0.0.1:1" in capsys.readouterr().err


def test_a_configuration_error_exits_with_the_configuration_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET__THREADS", "many")
    assert main(["invocations", "list"]) == EXIT_CONFIG
    assert "threads" in capsys.readouterr().err
