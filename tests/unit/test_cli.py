"""The `fleet` entry point itself."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import fleet
from fleet.cli import main


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"fleet {version}" == f"fleet {fleet.__version__}"
