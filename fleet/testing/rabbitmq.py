"""A private RabbitMQ node for tests, run from the distribution's `rabbitmq-server`.

Job: start a real RabbitMQ broker that shares nothing with any system RabbitMQ or with
other test processes: its own AMQP, Erlang distribution and epmd ports (all on
127.0.0.1), its own node name, cookie, config, data and log folders, no plugins.

Contract:
- `start()` returns once a pika BlockingConnection to `url` can open a channel, or
  raises `ServiceError` naming the log file (and quoting its tail) by `start_timeout`.
- `stop()` stops the node gracefully by PID (SIGTERM, SIGKILL after `stop_timeout`),
  then the epmd it started; no Erlang process is left behind. Ports and data are kept.
- `kill()` SIGKILLs the node (a crash); `start()` or `restart()` brings it back.
- `restart()` is `stop()` then `start()` on the same ports and data folder, so durable
  queues and persistent messages survive it.
- `close()` stops, releases the ports and deletes the folder it created (unless a start
  failed: then the folder stays for its log). The context manager calls `start()` and
  `close()`.
- `wait_for_definitions(*names)` waits until durable queue definitions are on disk:
  RabbitMQ 3.10 answers declare-ok a few ms before Mnesia writes them, so a `kill()`
  right after a declare can lose the queue together with its confirmed messages.
- Cluster members (`fleet.testing.rabbitmq_cluster`) pass `epmd_port` (an epmd they
  share, started by the cluster; the node then starts none) and `cookie` (written to
  the node's `$HOME/.erlang.cookie`). `ctl(*args)` runs `rabbitmqctl` against the node
  with the node's environment and returns its output, or raises `ServiceError`.
- The node runs as the current user (Debian's /usr/sbin wrapper would `su rabbitmq`).
  `consumer_timeout` (ms) is written to the node's rabbitmq.conf; with it set, the
  channel tick drops to 1 s so the timeout is enforced promptly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from fleet.testing._procs import (
    ManagedProcess,
    PortReservation,
    ServiceError,
    process_tree,
    reserve_port,
    wait_for_port,
    wait_until,
)

__all__ = ["RabbitMQServer", "ServiceError", "find_rabbitmq_server"]

_HOST = "127.0.0.1"
# Debian's /usr/sbin/rabbitmq-server re-executes itself as the rabbitmq user; the real
# script lives here and runs as whoever calls it.
_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/local/sbin/rabbitmq-server")


def find_rabbitmq_server() -> str:
    """Path of the `rabbitmq-server` start script, or `ServiceError` saying how to get it."""
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("rabbitmq-server")
    if found and found != "/usr/sbin/rabbitmq-server":
        return found
    raise ServiceError(
        "rabbitmq-server is not installed; run scripts/setup.sh (apt-get install rabbitmq-server)"
    )


def _pika() -> Any:
    try:
        import pika
    except ModuleNotFoundError as exc:
        raise ServiceError("pika is missing: pip install 'fleet-tasks[rabbitmq]'") from exc
    return pika


class RabbitMQServer:
    """A throwaway RabbitMQ node on loopback ports of its own."""

    def __init__(
        self,
        *,
        consumer_timeout: int | None = None,
        base_dir: Path | None = None,
        executable: str | None = None,
        start_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        epmd_port: int | None = None,
        cookie: str | None = None,
    ) -> None:
        """Args:
        consumer_timeout: ms a delivery may stay unacked before the channel is closed.
        base_dir: folder for config, data and logs (kept on close); default a new temp dir.
        executable: the rabbitmq-server script; default found by `find_rabbitmq_server`.
        start_timeout: seconds `start()` may take before it fails.
        stop_timeout: seconds a graceful stop may take before SIGKILL.
        epmd_port: an epmd already running on 127.0.0.1 to register with (a cluster's);
            default: the node starts its own on a port of its own.
        cookie: the Erlang cookie (cluster members share one); default: Erlang's own.
        """
        self.consumer_timeout = consumer_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._executable = executable
        self._own_dir = base_dir is None
        self._keep_dir = False
        self._base_dir = base_dir
        self._shared_epmd = epmd_port
        self._cookie = cookie
        self._env: dict[str, str] | None = None
        self._ports: dict[str, PortReservation] = {}
        self._node: ManagedProcess | None = None
        self._epmd: ManagedProcess | None = None
        self.last_start_seconds: float | None = None

    # -- addresses ---------------------------------------------------------------
    def _port(self, name: str) -> int:
        if name not in self._ports:
            raise ServiceError("RabbitMQServer has not been started yet")
        return self._ports[name].port

    @property
    def port(self) -> int:
        """The AMQP port."""
        return self._port("amqp")

    @property
    def dist_port(self) -> int:
        return self._port("dist")

    @property
    def epmd_port(self) -> int:
        if self._shared_epmd is not None:
            return self._shared_epmd
        return self._port("epmd")

    @property
    def node_name(self) -> str:
        return f"fleet-test-{self.port}@localhost"

    @property
    def url(self) -> str:
        """`amqp://guest:guest@127.0.0.1:<port>/%2F` (guest may log in on loopback only)."""
        return f"amqp://guest:guest@{_HOST}:{self.port}/%2F"

    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise ServiceError("RabbitMQServer has not been started yet")
        return self._base_dir

    @property
    def log_path(self) -> Path:
        return self.base_dir / "rabbitmq.log"

    def is_running(self) -> bool:
        return self._node is not None and self._node.is_running()

    def processes(self) -> set[tuple[int, int]]:
        """(pid, start time) of every live process of the node and its epmd."""
        found: set[tuple[int, int]] = set()
        for proc in (self._node, self._epmd):
            if proc is not None:
                found |= process_tree(proc.pid)
        return found

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> RabbitMQServer:
        """Start the node (and its epmd) and wait until AMQP clients can open channels."""
        if self.is_running():
            return self
        began = time.monotonic()
        deadline = began + self.start_timeout
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="fleet-rabbitmq-"))
        for name in ("amqp", "dist") if self._shared_epmd else ("amqp", "dist", "epmd"):
            self._ports.setdefault(name, reserve_port())
        env = self._env = self._prepare()
        try:
            self._start_epmd(env, deadline)
            self._node = ManagedProcess.start(
                "rabbitmq-server",
                [self._executable or find_rabbitmq_server()],
                log_path=self.log_path,
                env=env,
                cwd=self.base_dir,
            )
            wait_for_port(_HOST, self.port, deadline, self._node)
            wait_until(self._channel_opens, deadline, f"an AMQP channel on {self.url}", self._node)
            self._node.remember_children()
        except BaseException:
            self._keep_dir = True  # its log explains the failure
            self.stop()
            raise
        self.last_start_seconds = time.monotonic() - began
        return self

    def _start_epmd(self, env: dict[str, str], deadline: float) -> None:
        if self._shared_epmd is not None:
            return
        if self._epmd is not None and self._epmd.is_running():
            return
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        self._epmd = ManagedProcess.start(
            "epmd",
            [epmd, "-port", str(self.epmd_port), "-address", _HOST],
            log_path=self.base_dir / "epmd.log",
            env=env,
            cwd=self.base_dir,
        )
        wait_for_port(_HOST, self.epmd_port, deadline, self._epmd)

    def _prepare(self) -> dict[str, str]:
        """Write config files and return the environment for epmd and the node."""
        base = self.base_dir
        (base / "home").mkdir(exist_ok=True)
        if self._cookie is not None:
            cookie = base / "home" / ".erlang.cookie"
            if cookie.exists():
                cookie.chmod(0o600)
            cookie.write_text(self._cookie)
            cookie.chmod(0o400)
        (base / "rabbitmq-env.conf").write_text("")
        (base / "enabled_plugins").write_text("[].\n")
        conf = [f"listeners.tcp.default = {_HOST}:{self.port}"]
        advanced = "[].\n"
        if self.consumer_timeout is not None:
            conf.append(f"consumer_timeout = {int(self.consumer_timeout)}")
            advanced = "[{rabbit, [{channel_tick_interval, 1000}]}].\n"
        (base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        (base / "advanced.config").write_text(advanced)
        # Drop inherited settings so a developer's RabbitMQ or Erlang setup cannot leak in.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RABBITMQ_", "ERL_")) and k != "NOTIFY_SOCKET"
        }
        env.update(
            HOME=str(base / "home"),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=_HOST,
            ERL_CRASH_DUMP=str(base / "erl_crash.dump"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(base / "plugins-expand"),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_LOGS="-",
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_NODE_IP_ADDRESS=_HOST,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            # Unbound schedulers: several test nodes share two cores.
            RABBITMQ_SCHEDULER_BIND_TYPE="u",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"
            ),
        )
        return env

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run `rabbitmqctl -n <node> *args` with the node's environment; its stdout."""
        script = Path(self._executable or find_rabbitmq_server()).with_name("rabbitmqctl")
        env = self._env
        if env is None:
            raise ServiceError("RabbitMQServer has not been started yet")
        try:
            done = subprocess.run(
                [str(script), "-n", self.node_name, *args],
                env=env,
                cwd=self.base_dir,
                capture_output=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"rabbitmqctl {' '.join(args)} timed out after {timeout}s") from exc
        if done.returncode != 0:
            raise ServiceError(
                f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout.decode(errors="replace")

    def _channel_opens(self) -> bool:
        pika = _pika()
        params = pika.URLParameters(
            f"{self.url}?connection_attempts=1&socket_timeout=2&blocked_connection_timeout=5"
        )
        try:
            connection = pika.BlockingConnection(params)
        except pika.exceptions.AMQPError:
            return False
        try:
            connection.channel().close()
            return True
        except pika.exceptions.AMQPError:
            return False
        finally:
            if connection.is_open:
                connection.close()

    def wait_for_definitions(self, *names: str, timeout: float = 10.0) -> None:
        """Wait until the named durable queues/exchanges are in Mnesia's files on disk.

        RabbitMQ 3.10 answers queue.declare-ok a few milliseconds before Mnesia writes
        the definition to its log, so a `kill()` right after a declare can lose the queue
        (and the confirmed messages in it). Crash tests call this before `kill()`.
        """
        node_dir = self.base_dir / "mnesia" / self.node_name
        wanted = [name.encode() for name in names]

        def written() -> bool:
            blobs = [p.read_bytes() for p in node_dir.iterdir() if p.is_file()]
            return all(any(name in blob for blob in blobs) for name in wanted)

        deadline = time.monotonic() + timeout
        wait_until(written, deadline, f"definitions of {list(names)} on disk", self._node)

    def stop(self) -> None:
        """Stop the node gracefully, then its epmd. Ports and data are kept."""
        if self._node is not None:
            self._node.stop(self.stop_timeout)
            self._node = None
        if self._epmd is not None:
            self._epmd.stop(self.stop_timeout)
            self._epmd = None

    def kill(self) -> None:
        """SIGKILL the node (and its Erlang helpers), like a crash. epmd stays up."""
        if self._node is not None:
            self._node.kill()
            self._node = None

    def restart(self) -> RabbitMQServer:
        """Stop gracefully and start again on the same ports and data folder."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop, release the ports, and delete the folder if this object created it."""
        try:
            self.stop()
        finally:
            for reservation in self._ports.values():
                reservation.release()
            self._ports.clear()
            if self._own_dir and not self._keep_dir and self._base_dir is not None:
                shutil.rmtree(self._base_dir, ignore_errors=True)
                self._base_dir = None

    def __enter__(self) -> RabbitMQServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        ports = {k: v.port for k, v in self._ports.items()}
        return f"RabbitMQServer({state}, ports={ports}, dir={self._base_dir})"
