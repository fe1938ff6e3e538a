"""What the numbers were measured on: CPU, cores, memory, software versions, commit.

Job: describe the machine and the code of a run in a few lines for the report.
Contract: `describe(rabbitmq_url)` never raises; what it cannot find reads 'unknown'.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    head = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{head} (with uncommitted changes)" if dirty else head


def rabbitmq_version(url: str) -> str:
    if not url:
        return "not used"
    try:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            props = connection._impl.server_properties
            version = props.get("version", b"?")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            connection.close()
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def describe(rabbitmq_url: str = "") -> dict[str, str]:
    """Machine and software facts, in report order."""
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "RabbitMQ": rabbitmq_version(rabbitmq_url),
        "pika": _version("pika"),
        "Dramatiq": _version("dramatiq"),
        "fleet commit": commit(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
