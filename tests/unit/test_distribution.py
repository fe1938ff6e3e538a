"""The distribution name: `fleet` on the package index is an unrelated 2015 project.

The import name stays `fleet`; every install hint (README, errors, Dockerfile) names the
distribution from pyproject.toml, so `pip install` never brings in the other package.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
HINT = re.compile(r"pip install '?\"?([A-Za-z0-9_.-]+)\[")


def test_distribution_name_is_not_the_taken_one() -> None:
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert name != "fleet", "'fleet' on the package index is another project"


def test_every_install_hint_names_our_distribution() -> None:
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    files = [ROOT / "README.md", *ROOT.glob("docker/*"), *(ROOT / "fleet").rglob("*.py")]
    wrong = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in files
        if path.is_file()
        for match in HINT.finditer(path.read_text(encoding="utf-8"))
        if match.group(1) not in (name, ".")
    ]
    assert not wrong, f"install hints naming another distribution than {name!r}: {wrong}"
