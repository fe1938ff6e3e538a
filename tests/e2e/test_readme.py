"""The README's quick start and examples, run as a user would copy them.

A fenced block preceded by a `<!-- readme-test: ... -->` marker is part of a scenario:
- `file NAME`: the block is written to NAME in a fresh project folder;
- `start NAME`: the shell block is started in the background (a worker) and stopped by
  its PID when the scenario ends;
- `run NAME`: the shell block is run to completion and must exit 0;
- `inline`: the Python block is run on its own with `FLEET__INLINE=true`.
Blocks without a marker (installing from the package index, fragments) are not run. The
reference tables must match the code (`scripts/reference.py --check`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).parents[2]
MARKED = re.compile(r"<!-- readme-test: (\w+)(?: ([\w.]+))? -->\n```(\w+)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str, str]]:
    """(action, name, code) for each marked block, in README order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(action, name or "", code) for action, name, _, code in MARKED.findall(text)]


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET__")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path)
    return env


def test_reference_tables_match_the_code() -> None:
    check = subprocess.run(
        [sys.executable, "scripts/reference.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_own_project_quick_start_runs_as_written(tmp_path: Path) -> None:
    scenario = [b for b in blocks() if b[0] in ("file", "start", "run")]
    assert [a for a, _, _ in scenario].count("run") >= 1, "no runnable quick start found"
    env = environment(tmp_path)
    background: list[subprocess.Popen[bytes]] = []
    try:
        for action, name, code in scenario:
            if action == "file":
                (tmp_path / name).write_text(code, encoding="utf-8")
            elif action == "start":
                with (tmp_path / f"{name}.log").open("wb") as log:
                    background.append(
                        subprocess.Popen(
                            ["bash", "-c", f"exec {code.strip()}"],
                            cwd=tmp_path,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            else:
                done = subprocess.run(
                    ["bash", "-ec", code],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=90,
                    check=False,
                )
                logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
                assert done.returncode == 0, f"{code!r} failed:\n{done.stderr}\n{logs}"
                assert done.stdout.strip() == "5", done.stdout
    finally:
        for proc in background:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.parametrize(
    "code", [code for action, _, code in blocks() if action == "inline"], ids=lambda c: c[:30]
)
def test_inline_examples_run_as_written(tmp_path: Path, code: str) -> None:
    env = environment(tmp_path) | {"FLEET__INLINE": "true"}
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
