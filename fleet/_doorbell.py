"""Push wakeups between processes on one host, without polling.

Job: let a process that just committed work (a publish, a result) wake the processes
that wait for it, within microseconds, while idle waiters sleep in the kernel and use no
CPU.

Contract:
- A `Doorbell` is a Unix datagram socket bound to an address of its own: on Linux in the
  abstract namespace (`"\\0fleet/<hash>/<name>"`, printed as `"@fleet/<hash>/<name>"`),
  elsewhere a socket file under `/tmp/fleet-<uid>/<hash>/` (short, to fit `sun_path`).
  `<hash>` is 12 hex digits of a hash of `namespace` (the database path), so stores on
  different files never ring each other. Names must be unique (see `unique_name`).
- `wait(timeout)` blocks in `poll` until a datagram arrives, `wakeup()` is called, or the
  timeout passes; then it drains every pending datagram without blocking and returns the
  non-empty payloads. An empty datagram is a plain ring: it ends the wait and carries
  nothing. `wakeup()` is safe from any thread (a byte on a private socketpair).
- `ring(address, payload)` never blocks and never raises for a receiver that is gone
  (False) or whose queue is full (False). `send` tells those two cases apart, which
  matters: a full receiver will wake anyway, a gone one should be forgotten.
- Payload size: up to `MAX_PAYLOAD` (64 KiB) bytes are delivered as sent. A larger
  payload is replaced by the marker `OVERSIZE`: its receiver knows that a notification
  was lost and must read the state store instead.
- Limits of the kernel: Linux queues at most `net.unix.max_dgram_qlen` datagrams (often
  10) per receiver, and charges unread bytes to the sending socket's buffer. A burst
  beyond that is refused (FULL); `send(..., patience=...)` retries briefly. Rings are
  never lost for their purpose (a full queue means the receiver will wake), but payload
  notifications are best effort, as the broker contract says.
- Abstract addresses are per network namespace: processes in different containers that
  share a database file cannot ring each other (they fall back to their safety-net poll).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import itertools
import math
import os
import secrets
import select
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

MAX_PAYLOAD = 64 * 1024
"""Largest payload delivered as is; larger ones become `OVERSIZE`."""
OVERSIZE = b"\x00fleet:oversize"
"""Sent instead of a payload over `MAX_PAYLOAD`: the receiver must read the state store."""

_BUFFER = 4 * 1024 * 1024  # asked for; the kernel caps it at net.core.[rw]mem_max
_MAX_POLL_MS = 2**31 - 1  # poll() takes a C int; longer waits end early (callers loop)
_DRAIN_LIMIT = 4096  # datagrams taken per wait, so a flood cannot pin a waiter here
# errno None: an address the socket layer rejects outright (too long); nobody is there.
_GONE = frozenset(
    {None, errno.ECONNREFUSED, errno.ENOENT, errno.ENOTDIR, errno.EPROTOTYPE, errno.EINVAL}
)
_FULL = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})
_ids = itertools.count(1)


class Outcome(enum.Enum):
    """What became of one `send`."""

    SENT = "sent"
    FULL = "full"
    """The receiver's queue (or our send buffer) is full; it has rings pending."""
    GONE = "gone"
    """Nobody listens at that address any more."""


def abstract_supported() -> bool:
    """True where the Linux abstract socket namespace exists."""
    return sys.platform.startswith("linux")


def unique_name(prefix: str) -> str:
    """A doorbell name unique on this host: prefix, pid, counter and a random tag."""
    return f"{prefix}{os.getpid()}-{next(_ids)}-{secrets.token_hex(3)}"


def _digest(namespace: str) -> str:
    return hashlib.sha256(namespace.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def address_of(namespace: str, name: str) -> str:
    """The abstract address of the doorbell `name` in `namespace` (Linux only)."""
    return f"@fleet/{_digest(namespace)}/{name}"


def _socket_dir() -> Path:
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"fleet-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _raw(address: str) -> str:
    """The sockaddr form of a printable address ('@...' is abstract)."""
    return "\0" + address[1:] if address.startswith("@") else address


class Doorbell:
    """A socket that others ring; see the module docstring."""

    def __init__(self, namespace: str, name: str, *, abstract: bool | None = None) -> None:
        if not name or "/" in name or "\0" in name:
            raise ValueError(f"doorbell name must be non-empty without '/' or NUL: {name!r}")
        digest = _digest(namespace)
        self.abstract = abstract_supported() if abstract is None else abstract
        self._path: Path | None = None
        if self.abstract:
            self.address = address_of(namespace, name)
        else:
            folder = _socket_dir() / digest
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._path = folder / name
            self.address = str(self._path)
        if len(_raw(self.address).encode()) > 107:
            raise ValueError(f"doorbell address too long for a Unix socket: {self.address!r}")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
            self._sock.bind(_raw(self.address))
            for sock in (self._sock, self._wake_r, self._wake_w):
                sock.setblocking(False)
        except BaseException:
            self._close_sockets()
            raise
        self._poll = select.poll()
        self._poll.register(self._sock.fileno(), select.POLLIN)
        self._poll.register(self._wake_r.fileno(), select.POLLIN)
        self._closed = False

    def wait(self, timeout: float | None) -> list[bytes]:
        """Block until a ring, a wakeup or `timeout`; return the payloads received."""
        if self._closed:
            return []
        ms = None if timeout is None else min(max(0, math.ceil(timeout * 1000)), _MAX_POLL_MS)
        self._poll.poll(ms)
        return self.drain()

    def drain(self) -> list[bytes]:
        """Take every pending datagram without blocking; return the non-empty ones."""
        payloads: list[bytes] = []
        if self._closed:
            return payloads
        for _ in range(_DRAIN_LIMIT):
            try:
                data = self._sock.recv(MAX_PAYLOAD + 1024)
            except (BlockingIOError, InterruptedError):
                break
            if data:
                payloads.append(data)
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        return payloads

    def fileno(self) -> int:
        """The receiving socket, for a caller that polls it with others (then `drain`)."""
        return self._sock.fileno()

    def wakeup(self) -> None:
        """Make a blocked `wait` return now. Safe from any thread, and after close."""
        with contextlib.suppress(OSError):  # full (a wakeup is pending already) or closed
            self._wake_w.send(b"\0")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._sock, self._wake_r, self._wake_w):
            sock.close()
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()

    def __enter__(self) -> Doorbell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Doorbell({self.address!r})"


class _Sender:
    """One thread's sending socket; closes it when the thread's locals go away."""

    __slots__ = ("sock",)

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)

    def __del__(self) -> None:
        self.sock.close()


_local = threading.local()


def _sender() -> socket.socket:
    sender: _Sender | None = getattr(_local, "sender", None)
    if sender is None:
        sender = _local.sender = _Sender()
    return sender.sock


def send(address: str, payload: bytes = b"", patience: float = 0.0) -> Outcome:
    """Send one datagram to `address` without blocking (see `Outcome`).

    With `patience` > 0, a FULL receiver is retried for up to that many seconds (short
    sleeps): for payload notifications that should survive a burst.
    """
    if len(payload) > MAX_PAYLOAD:
        payload = OVERSIZE
    raw = _raw(address)
    sock = _sender()
    deadline = 0.0
    pause = 0.0002
    while True:
        try:
            sock.sendto(payload, raw)
            return Outcome.SENT
        except OSError as exc:
            if exc.errno in _GONE:
                return Outcome.GONE
            if exc.errno == errno.EMSGSIZE and payload != OVERSIZE:
                payload = OVERSIZE  # the kernel's buffers are smaller than MAX_PAYLOAD here
                continue
            if exc.errno not in _FULL:
                raise
        if patience <= 0:
            return Outcome.FULL
        now = time.monotonic()
        if not deadline:
            deadline = now + patience
        elif now >= deadline:
            return Outcome.FULL
        time.sleep(min(pause, deadline - now))
        pause *= 2


def ring(address: str, payload: bytes = b"") -> bool:
    """Ring `address` (with an optional payload); False if gone or full, never raises
    for those."""
    return send(address, payload) is Outcome.SENT


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
