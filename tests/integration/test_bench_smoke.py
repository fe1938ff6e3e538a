"""`python -m bench --quick` on the embedded stack: it runs and writes its report; and
the parts of `python -m bench.embedded_bounds`, small.

Speed is never asserted here: only that the harness works end to end (real worker
processes, a results file with the measured rows, the rows each part wrote).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from bench import embedded_bounds

REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--configs",
            "embedded",
            "--only",
            "W1,W2",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reports = list(out.glob("*-quick.md"))
    assert len(reports) == 1, sorted(p.name for p in out.iterdir())
    text = reports[0].read_text()
    assert "W1 throughput, one call per task" in text
    assert "W2 round trip p50" in text
    assert "fleet embedded (SQLite)" in text
    assert list(out.glob("*-quick.json"))


def test_quick_trigger_bench_writes_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--configs",
            "embedded",
            "--only",
            "triggers",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = out.glob("*-quick.md")
    text = report.read_text()
    for row in (
        "W1 throughput, no triggers defined",
        "W1 throughput, 100 unrelated triggers",
        "W1 slowdown with 100 unrelated triggers",
        "Cron tick to triggered run, p50",
        "Embedded cron tick to run p50 (ms)",
    ):
        assert row in text


def test_quick_signing_bench_writes_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--configs",
            "embedded",
            "--only",
            "signing",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = out.glob("*-quick.md")
    text = report.read_text()
    for row in (
        "W1 throughput, messages unsigned",
        "W1 throughput, messages signed (HMAC-SHA256)",
        "W1 slowdown with signed messages",
        "Signing: sign + check CPU per message",
    ):
        assert row in text


def test_quick_metrics_bench_writes_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--configs",
            "embedded",
            "--only",
            "metrics",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = out.glob("*-quick.md")
    text = report.read_text()
    for row in (
        "W1 throughput, metrics off",
        "W1 throughput, `--metrics-port` on",
        "W1 slowdown with Prometheus metrics",
        "W1 worker CPU per task added by metrics",
        "Embedded W1 slowdown with Prometheus metrics (%)",
    ):
        assert row in text


def _invocations(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM fleet_invocations").fetchone()[0])
    finally:
        conn.close()


def test_embedded_bounds_parts_measure_what_they_name(tmp_path: Path) -> None:
    """bench/embedded_bounds.py: each part writes where it says, and a drain run
    finishes its whole backlog (small sizes; rates only have to be there)."""
    for connections in (1, 2):
        folder = tmp_path / f"floor-{connections}"
        folder.mkdir()
        floor = embedded_bounds.commit_floor(folder, 50, connections)
        assert floor["rate"] > 0 and floor["cpu"] > 0
        assert _invocations(folder / "floor.db") == 50

    for shared, files in ((True, 1), (False, 2)):
        folder = tmp_path / f"producers-{shared}"
        folder.mkdir()
        sample = embedded_bounds.producers(folder, 100, 2, shared)
        assert sample["rate"] > 0 and sample["cpu"] > 0
        dbs = sorted(folder.glob("*.db"))
        assert len(dbs) == files, dbs
        # each producer: one warm-up call, then the measured ones
        assert sum(_invocations(db) for db in dbs) == 2 * 101

    folder = tmp_path / "drain"
    folder.mkdir()
    sample = embedded_bounds.drain(folder, 300, 4)
    assert sample["rate"] > 0 and sample["cpu"] > 0
    (db,) = folder.glob("*.db")
    assert embedded_bounds.finished(str(db)) == 300
