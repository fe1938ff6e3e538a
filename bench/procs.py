"""Worker pools as separate OS processes, started with their output in a log file.

Job: start the processes a workload measures (fleet's `fleet worker`, Dramatiq's CLI,
the raw pika consumer) and stop them, and everything they spawned, by PID.

Contract: `Pool.start()` runs argv in the repository root with the given environment
and stdout/stderr appended to `log_path`. `stop()` sends SIGTERM to the leader, waits up
to `timeout` seconds, then SIGKILLs the leader and every descendant it had (recorded
before the SIGTERM). `alive()` says whether the leader still runs; `check()` raises with
the log's tail when it died. Nothing here touches a process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fleet.testing._procs import alive, process_tree, tail
from fleet.testing.worker import WorkerCommand

REPO = Path(__file__).resolve().parents[1]


class Pool:
    """One started process tree (a worker pool), logged to a file."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "pool not started"
        return self.process.pid

    def start(self) -> Pool:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"{self.argv[:4]} exited with {self.process.returncode}; "
                f"log {self.log_path}:\n{tail(self.log_path)}"
            )

    def stop(self, timeout: float = 60.0) -> None:
        process = self.process
        if process is None:
            return
        tree = process_tree(process.pid) if process.poll() is None else set()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for ident in tree:
            if alive(ident):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(ident[0], signal.SIGKILL)
        self.process = None

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fleet_pool(
    processes: int, threads: int, env: Mapping[str, str], log_path: Path, app: str
) -> Pool:
    """`python -m fleet worker --app APP --processes P --threads T` (see WorkerCommand)."""
    command = WorkerCommand(app, processes=processes, threads=threads).command
    return Pool(command, env, log_path)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
