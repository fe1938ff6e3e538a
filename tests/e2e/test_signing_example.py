"""`examples/signed_messages.py` runs as its docstring says and shows the forged message
set aside with its reason."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def test_the_signing_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.signed_messages"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEET__")},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "signed call: 5" in done.stdout
    assert (
        "forged message dead-lettered: forged message: signature does not match key '2026-12'"
        in done.stdout
    )
