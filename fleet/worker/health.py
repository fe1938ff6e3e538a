"""Local health files: what Kubernetes probes read, without the app or the state store.

Job: let a liveness probe tell that the supervisor loop still turns, and a readiness
probe that every worker process of the pod has its consumer attached, by reading small
files on the pod's own disk (no `--app` import, no network round trip).

Contract:
- Off unless the setting `health_dir` names a folder (created when missing).
- The supervisor writes `supervisor.json` at every heartbeat: `beat` (epoch seconds),
  `pid`, `children` (pids of its current worker processes), `processes` (how many it
  runs) and `stopping`.
- Each worker process writes `process-<pid>.json` at every heartbeat and as soon as its
  consumer is attached: `beat`, `consuming` (a consumer is attached and the last
  receive worked, and the consumer says it is connected: `Consumer.attached`),
  `failures` (broker or state failures in a row) and `error` (the
  last, credentials never included: exception type and broker-scrubbed message).
- Writes are atomic (temporary file + rename) and never raise: a failed write is logged
  and the probe sees an ageing file.
- `live` and `ready` return the problems found (empty: healthy). Live: the supervisor's
  file exists and is younger than `max_age`. Ready: live, not stopping, as many children
  as `processes`, each with a file younger than `max_age` that says `consuming`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from fleet._urls import scrub

log = logging.getLogger(__name__)

SUPERVISOR = "supervisor.json"


def process_file(pid: int) -> str:
    return f"process-{pid}.json"


def write(folder: str, name: str, data: dict[str, Any]) -> None:
    """Replace `folder/name` with `data` as JSON, atomically; never raises."""
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(tmp, os.path.join(folder, name))
    except OSError as exc:
        log.warning("cannot write health file %s in %s: %s", name, folder, exc)


class ProcessHealth:
    """What one worker process reports: consumer attached, failures in a row."""

    def __init__(self, folder: str, secrets: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.secrets = secrets
        """Passwords of the broker and state URLs, scrubbed from error texts."""
        self.name = process_file(os.getpid())
        self.attached = False
        self.failures = 0
        self.error = ""

    def consuming(self) -> None:
        """A receive worked (called by the consumer loop; cheap when nothing changes)."""
        if self.failures or not self.attached:
            first = not self.attached
            self.attached, self.failures, self.error = True, 0, ""
            if first:
                self.write()  # readiness need not wait for the next heartbeat

    def failed(self, error: BaseException) -> None:
        """The consumer loop failed (broker or state store); it will retry."""
        self.attached, self.failures = False, self.failures + 1
        self.error = scrub(f"{type(error).__name__}: {error}", self.secrets)[:500]

    def write(self, stopping: bool = False, connected: bool = True) -> None:
        """Write the file; `connected`: the consumer says it is attached to the broker."""
        error = self.error
        if not error and self.attached and not connected:
            error = "the consumer lost the broker and is reconnecting"
        data = {
            "beat": time.time(),
            "pid": os.getpid(),
            "consuming": self.attached and connected and not self.failures and not stopping,
            "failures": self.failures,
            "error": error,
        }
        write(self.folder, self.name, data)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _age(data: dict[str, Any], now: float) -> float:
    beat = data.get("beat")
    return now - float(beat) if isinstance(beat, int | float) else float("inf")


def live(folder: str, max_age: float, now: float | None = None) -> list[str]:
    """Why the supervisor of `folder` is not alive (empty: it is)."""
    now = time.time() if now is None else now
    path = Path(folder) / SUPERVISOR
    data = _read(path)
    if data is None:
        return [f"no readable {path}: the supervisor has not started (or health_dir differs)"]
    age = _age(data, now)
    if age > max_age:
        return [f"supervisor (pid {data.get('pid')}) last beat {age:.1f}s ago (> {max_age:g}s)"]
    return []


def ready(folder: str, max_age: float, now: float | None = None) -> list[str]:
    """Why the pod of `folder` is not ready to work (empty: it is ready)."""
    now = time.time() if now is None else now
    problems = live(folder, max_age, now)
    if problems:
        return problems
    supervisor = _read(Path(folder) / SUPERVISOR) or {}
    if supervisor.get("stopping"):
        return ["the supervisor is shutting down"]
    children = supervisor.get("children")
    children = children if isinstance(children, list) else []
    wanted = supervisor.get("processes", 0)
    if isinstance(wanted, int) and len(children) < wanted:
        problems.append(f"{len(children)} of {wanted} worker process(es) running")
    for pid in children:
        data = _read(Path(folder) / process_file(int(pid)))
        if data is None:
            problems.append(f"worker process {pid} has not reported yet")
            continue
        age = _age(data, now)
        if age > max_age:
            problems.append(f"worker process {pid} last reported {age:.1f}s ago")
        elif not data.get("consuming"):
            error = data.get("error") or "no consumer attached yet"
            failures = data.get("failures", 0)
            problems.append(
                f"worker process {pid} is not consuming ({failures} failure(s) in a row: {error})"
            )
    return problems
