"""A MongoDB-wire server for tests: an external mongod, a Docker mongo:7, or SecantusDB.

Job: give a test session a MongoDB URL whose database nobody else uses, from the best
server available, and clean up after it.

Contract:
- `MongoServer(external_url=...)` uses that server (kind 'external'); otherwise, when a
  Docker daemon answers `docker info` and `testcontainers` is importable, it runs
  `mongo:7` (kind 'docker'); otherwise it starts `secantusd-py` in memory on a reserved
  loopback port (kind 'secantus'), a MongoDB-wire stand-in that is slow and beta: never
  benchmark on it.
- `start()` returns once pymongo's `ping` succeeds on `url`, or raises `ServiceError`
  (naming the log file for SecantusDB) by `start_timeout`.
- `url` always names a fresh database `fleet_test_<hex>` (`database`); credentials in an
  external URL keep authenticating against their original database (authSource).
- `close()` drops that database on an external server, stops what it started (by PID
  for SecantusDB), and deletes the folder it created (kept when a start failed, for
  its log). `mongo_server()` reads
  `FLEET_TEST_MONGO_URL` when called and wraps start/close in a context manager.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fleet.testing._procs import (
    ManagedProcess,
    PortReservation,
    ServiceError,
    reserve_port,
    wait_for_port,
    wait_until,
)

__all__ = [
    "Kind",
    "MongoServer",
    "ServiceError",
    "docker_available",
    "drop_database",
    "mongo_server",
    "with_database",
]

Kind = Literal["external", "docker", "secantus"]
_HOST = "127.0.0.1"


def with_database(url: str, database: str) -> str:
    """`url` pointing at `database`, keeping credentials bound to their auth database."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if "@" in parts.netloc and not any(k.lower() == "authsource" for k, _ in query):
        query.append(("authSource", parts.path.lstrip("/") or "admin"))
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", urlencode(query), ""))


def docker_available(timeout: float = 5.0) -> bool:
    """True when a Docker daemon answers and testcontainers' MongoDB module is importable."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        if importlib.util.find_spec("testcontainers.mongodb") is None:
            return False
    except ModuleNotFoundError:
        return False
    try:
        done = subprocess.run([docker, "info"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_secantusd() -> str:
    """The `secantusd-py` script beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("secantusd-py")
    if found is None:
        raise ServiceError("secantusd-py is not installed: pip install 'fleet-tasks[dev]'")
    return found


class MongoServer:
    """A MongoDB-wire server and a database of this session's own."""

    def __init__(
        self,
        *,
        external_url: str | None = None,
        use_docker: bool | None = None,
        base_dir: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        """Args:
        external_url: use this server instead of starting one.
        use_docker: force (True) or forbid (False) Docker; None detects it.
        base_dir: folder for SecantusDB's config and log (kept on close).
        start_timeout: seconds `start()` may take before it fails.
        stop_timeout: seconds a graceful stop may take before SIGKILL.
        """
        self.database = f"fleet_test_{uuid.uuid4().hex[:12]}"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.last_start_seconds: float | None = None
        self._external = external_url
        self._use_docker = use_docker
        self._own_dir = base_dir is None
        self._keep_dir = False
        self._base_dir = base_dir
        self._kind: Kind | None = None
        self._url: str | None = None
        self._proc: ManagedProcess | None = None
        self._port: PortReservation | None = None
        self._container: Any = None

    @property
    def kind(self) -> Kind:
        """'external', 'docker' or 'secantus'."""
        if self._kind is None:
            raise ServiceError("MongoServer has not been started yet")
        return self._kind

    @property
    def url(self) -> str:
        """A mongodb:// URL whose default database is `database`."""
        if self._url is None:
            raise ServiceError("MongoServer has not been started yet")
        return self._url

    @property
    def log_path(self) -> Path | None:
        return self._proc.log_path if self._proc else None

    def start(self) -> MongoServer:
        """Pick and start a server, and wait until it answers `ping`."""
        if self._url is not None:
            return self
        began = time.monotonic()
        deadline = began + self.start_timeout
        try:
            if self._external:
                self._kind, base = "external", self._external
            elif self._use_docker or (self._use_docker is None and docker_available()):
                self._kind, base = "docker", self._start_docker()
            else:
                self._kind, base = "secantus", self._start_secantus(deadline)
            url = with_database(base, self.database)
            wait_until(lambda: _pings(url), deadline, f"MongoDB ping on {self._kind}", self._proc)
        except BaseException:
            self._keep_dir = True  # its log explains the failure
            self.close()
            raise
        self._url = url
        self.last_start_seconds = time.monotonic() - began
        return self

    def _start_docker(self) -> str:
        module = importlib.import_module("testcontainers.mongodb")
        self._container = module.MongoDbContainer("mongo:7")
        self._container.start()
        return str(self._container.get_connection_url())

    def _start_secantus(self, deadline: float) -> str:
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="fleet-secantus-"))
        base = self._base_dir
        (base / "tmp").mkdir(exist_ok=True)
        # An explicit (empty) config stops it from reading ./secantusd.toml or ~/.secantus.
        (base / "secantusd.toml").write_text("")
        self._port = reserve_port()
        port = self._port.port
        env = dict(os.environ, TMPDIR=str(base / "tmp"))  # ':memory:' data goes here
        self._proc = ManagedProcess.start(
            "secantusd-py",
            [
                find_secantusd(),
                *("--config", str(base / "secantusd.toml")),
                *("--host", _HOST, "--port", str(port), "--storage-path", ":memory:"),
            ],
            log_path=base / "secantusd.log",
            env=env,
            cwd=base,
        )
        wait_for_port(_HOST, port, deadline, self._proc)
        return f"mongodb://{_HOST}:{port}/"

    def close(self) -> None:
        """Drop the database (external server), stop what was started, remove temp files."""
        try:
            if self._kind == "external" and self._url is not None:
                drop_database(self._url)
        finally:
            self._url = None
            if self._proc is not None:
                self._proc.stop(self.stop_timeout)
                self._proc = None
            if self._container is not None:
                self._container.stop()
                self._container = None
            if self._port is not None:
                self._port.release()
                self._port = None
            if self._own_dir and not self._keep_dir and self._base_dir is not None:
                shutil.rmtree(self._base_dir, ignore_errors=True)
                self._base_dir = None

    stop = close

    def __enter__(self) -> MongoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MongoServer(kind={self._kind}, database={self.database!r})"


def _client(url: str) -> Any:
    try:
        from pymongo import MongoClient
    except ModuleNotFoundError as exc:
        raise ServiceError("pymongo is missing: pip install 'fleet-tasks[mongo]'") from exc
    return MongoClient(url, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000)


def _pings(url: str) -> bool:
    client = _client(url)
    from pymongo.errors import PyMongoError

    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def drop_database(url: str) -> None:
    """Drop the database that `url` names (its default database)."""
    client = _client(url)
    try:
        client.drop_database(client.get_default_database())
    finally:
        client.close()


@contextmanager
def mongo_server(**kwargs: Any) -> Iterator[MongoServer]:
    """A started `MongoServer`; `FLEET_TEST_MONGO_URL`, when set, names an external one."""
    kwargs.setdefault("external_url", os.environ.get("FLEET_TEST_MONGO_URL") or None)
    with MongoServer(**kwargs) as server:
        yield server
