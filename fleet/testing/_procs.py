"""Ports and processes for the test-service fixtures (RabbitMQ, MongoDB stand-ins).

Job: hand out loopback ports that no other fleet test process on this host will pick,
start a server process with its output captured to a log file, wait for it to become
ready with a deadline, and stop it, and every process it spawned, by PID.

Contract:
- `reserve_port()` returns a `PortReservation` for a TCP port that was free on 127.0.0.1
  and lies outside the kernel's ephemeral range (so client sockets cannot grab it before
  the server binds). The reservation is an flock on a file in a shared temp folder, held
  until `release()` or process exit, so parallel pytest-xdist workers never collide.
  `free_port()` is the same, kept for the life of the process.
- `wait_until` / `wait_for_port` poll with a deadline (a `time.monotonic()` value). If the
  watched `ManagedProcess` exits first, they fail at once with its exit code, its log
  path and the tail of its log. Every failure is a `ServiceError`.
- `ManagedProcess.start` runs argv in a new session, stdin closed, stdout and stderr
  appended to `log_path`. `stop()` sends SIGTERM to the leader, waits for the leader and
  every descendant it had (tracked through /proc, since Erlang's helpers call setsid),
  then SIGKILLs what is left. `kill()` SIGKILLs the whole tree at once. Neither leaves a
  zombie or an open file behind. Processes still running at interpreter exit are killed.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_POLL = 0.05
_live: set[ManagedProcess] = set()
_kept: list[PortReservation] = []


class ServiceError(RuntimeError):
    """A test service could not be started, reached, or stopped."""


class PortReservation:
    """A loopback TCP port held for this process until `release()`."""

    def __init__(self, port: int, fd: int) -> None:
        self.port = port
        self._fd: int | None = fd

    def release(self) -> None:
        """Let other processes pick this port again (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"PortReservation(port={self.port}, held={self._fd is not None})"


def _candidate_range() -> tuple[int, int]:
    try:
        low, _ = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        ephemeral_low = int(low)
    except (OSError, ValueError):
        ephemeral_low = 32768
    if ephemeral_low > 12000:
        return 10000, ephemeral_low - 1
    return 49152, 65535


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve_port(attempts: int = 500) -> PortReservation:
    """Reserve a free loopback port that no other fleet test process will pick."""
    lock_dir = Path(tempfile.gettempdir()) / "fleet-test-ports"
    lock_dir.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        lock_dir.chmod(0o1777)  # shared by every user's test runs on this host
    low, high = _candidate_range()
    for _ in range(attempts):
        port = random.randint(low, high)
        try:
            fd = os.open(lock_dir / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _bindable(port):
            return PortReservation(port, fd)
        os.close(fd)
    raise ServiceError(f"no free loopback port found in {low}-{high} after {attempts} tries")


def free_port() -> int:
    """Return a free loopback port, reserved (see `reserve_port`) until this process exits."""
    reservation = reserve_port()
    _kept.append(reservation)
    return reservation.port


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of `pid`, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], int(fields[19])


def process_tree(root: int) -> set[tuple[int, int]]:
    """(pid, start time) of `root` and all its live descendants, from /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    me: tuple[int, int] | None = None
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc (not Linux): only the leader is tracked
        pids = [root]
    for pid in pids:
        info = _stat(pid)
        if info is None or info[1] == "Z":
            continue
        children.setdefault(info[0], []).append((pid, info[2]))
        if pid == root:
            me = (pid, info[2])
    found: set[tuple[int, int]] = set()
    stack = [me] if me else []
    while stack:
        ident = stack.pop()
        found.add(ident)
        stack.extend(children.get(ident[0], []))
    return found


def alive(ident: tuple[int, int]) -> bool:
    info = _stat(ident[0])
    return info is not None and info[1] != "Z" and info[2] == ident[1]


def _signal(idents: set[tuple[int, int]], sig: signal.Signals) -> None:
    for ident in idents:
        if alive(ident):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(ident[0], sig)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """A server process started in its own session, logged to a file, stopped by PID."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._popen = popen
        self._known: set[tuple[int, int]] = set()
        self.remember_children()

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start `argv`; its output is appended to `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"--- fleet.testing: starting {' '.join(argv)}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env) if env is not None else None,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServiceError(f"{name}: cannot run {argv[0]!r}: {exc}") from exc
        proc = cls(name, popen, log_path)
        _live.add(proc)
        return proc

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def is_running(self) -> bool:
        return self._popen.poll() is None

    def remember_children(self) -> None:
        """Record the current process tree, so children that outlive the leader still die."""
        # Once the leader is reaped its PID may belong to a stranger: never scan from it.
        if self._popen.returncode is None:
            self._known |= process_tree(self.pid)

    def describe_exit(self) -> str:
        return (
            f"{self.name} (pid {self.pid}) exited with code {self.returncode}; "
            f"log: {self.log_path}\n{tail(self.log_path)}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the leader, wait for its whole tree, SIGKILL leftovers after `timeout`."""
        self.remember_children()
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(alive(i) for i in self._known):
            time.sleep(_POLL)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the leader and every descendant now, and reap the leader."""
        self.remember_children()
        _signal(self._known, signal.SIGSTOP)  # freeze first, so nothing spawns an orphan
        self.remember_children()
        _signal(self._known, signal.SIGKILL)
        if self._popen.returncode is None:  # not reaped: the group id is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self._popen.wait()
        deadline = time.monotonic() + 10.0
        while any(alive(i) for i in self._known):
            if time.monotonic() > deadline:
                left = sorted(i[0] for i in self._known if alive(i))
                raise ServiceError(f"{self.name}: processes {left} survived SIGKILL")
            time.sleep(_POLL)
        self._known.clear()
        _live.discard(self)


def wait_until(
    check: Callable[[], bool],
    deadline: float,
    what: str,
    proc: ManagedProcess | None = None,
) -> None:
    """Poll `check` until it returns True; `deadline` is a `time.monotonic()` value."""
    while True:
        if proc is not None and not proc.is_running():
            raise ServiceError(f"{proc.describe_exit()}\n(while waiting for {what})")
        if check():
            return
        if time.monotonic() >= deadline:
            where = f"; log: {proc.log_path}\n{tail(proc.log_path)}" if proc else ""
            raise ServiceError(f"timed out waiting for {what}{where}")
        time.sleep(_POLL)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, deadline: float, proc: ManagedProcess | None = None
) -> None:
    """Wait until `host:port` accepts TCP connections (`deadline`: a monotonic time)."""
    name = proc.name if proc else "server"
    wait_until(lambda: port_open(host, port), deadline, f"{name} on {host}:{port}", proc)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.kill()
