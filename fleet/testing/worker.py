"""Workers for tests, demos and benchmarks: on a thread, or as a real `fleet worker`.

Job: run the full hot path (submit, receive, claim, run, commit, notify) in the test
process (`running_worker`, for the memory backends and quick integration tests), or
start and stop real worker processes (`WorkerCommand`, for e2e tests and the demo).
Contract: `running_worker(app)` starts a `WorkerProcess` on a daemon thread, waits until
it consumes, yields it, and stops it on exit (hard time limits interrupt the task's
thread instead of exiting). `WorkerCommand` starts `python -m fleet worker` in a process group of
its own and stops it by its PID: SIGTERM, then SIGKILL after a deadline, then SIGKILL
to whatever is left of its group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from fleet.app import Fleet
from fleet.worker.process import WorkerProcess


@contextmanager
def running_worker(
    app: Fleet, *, threads: int = 4, queues: Sequence[str] = (), start_timeout: float = 30.0
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(app, queues=queues, threads=threads)
    thread = threading.Thread(target=worker.run, name="fleet-test-worker", daemon=True)
    thread.start()
    if not worker.ready.wait(start_timeout):
        worker.stop()
        raise TimeoutError(f"worker did not start consuming within {start_timeout}s")
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=app.settings.shutdown_grace + 30)


class WorkerCommand:
    """`fleet worker` in a child process (a supervisor with its worker processes)."""

    def __init__(
        self,
        app_path: str,
        *,
        processes: int = 1,
        threads: int = 1,
        queues: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "fleet",
            "worker",
            "--app",
            app_path,
            "--processes",
            str(processes),
            "--threads",
            str(threads),
        ]
        if queues:
            self.command += ["--queues", ",".join(queues)]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> WorkerCommand:
        # A process group of its own: `stop` can reap every worker process it started.
        self.process = subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, start_new_session=True
        )
        return self

    def wait_consumers(
        self, app: Fleet, count: int, queue: str | None = None, timeout: float = 60.0
    ) -> None:
        """Block until `queue` has at least `count` consumers (or the process died)."""
        broker = app.runtime().broker
        queue = queue or app.settings.default_queue
        deadline = time.monotonic() + timeout
        while broker.stats(queue).consumers < count:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} consumers on {queue} after {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit status."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Whatever outlived the supervisor (nothing should): its group, by its PID.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> WorkerCommand:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
