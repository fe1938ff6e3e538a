"""A private RabbitMQ cluster for tests: several `RabbitMQServer` nodes joined into one.

Job: start N RabbitMQ nodes on loopback ports of their own (node names, AMQP and
distribution ports, data folders), sharing one Erlang cookie and one epmd (started by
the cluster, so that the nodes find each other), and join them into a cluster with
`rabbitmqctl join_cluster`, so that quorum queues declared afterwards have a replica on
every node.

Contract:
- `start()` starts the first node, then each other node, and joins it to the first
  (`stop_app`, `join_cluster`, `start_app`); it returns once `cluster_status` on the
  first node lists every node as running, or raises `ServiceError`.
- `url` names every node (`amqp://guest:guest@127.0.0.1:p1,127.0.0.1:p2,.../%2F`), the
  multi-host form fleet's RabbitMQ broker fails over with.
- `leader_of(queue)` is the node that leads a quorum queue (`rabbitmqctl list_queues
  name leader`, asked of a running node). `kill(node)` SIGKILLs a node; `restart(node)`
  starts it again on its ports and data, and waits until it runs in the cluster again.
- `close()` stops every node by PID, then the epmd, and deletes the folders (kept when a
  start failed). Every process is stopped by PID; nothing is left behind.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType

from fleet.testing._procs import (
    ManagedProcess,
    PortReservation,
    ServiceError,
    reserve_port,
    wait_for_port,
    wait_until,
)
from fleet.testing.rabbitmq import RabbitMQServer

__all__ = ["RabbitMQCluster"]

_HOST = "127.0.0.1"


class RabbitMQCluster:
    """N clustered RabbitMQ nodes on loopback ports; see the module docstring."""

    def __init__(self, size: int = 3, *, start_timeout: float = 120.0) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got {size!r}")
        self.size = size
        self.start_timeout = start_timeout
        self._base = Path(tempfile.mkdtemp(prefix="fleet-rabbitmq-cluster-"))
        self._keep = False
        self._epmd_port: PortReservation | None = None
        self._epmd: ManagedProcess | None = None
        self.cookie = secrets.token_hex(16).upper()
        self.nodes: list[RabbitMQServer] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{_HOST}:{node.port}" for node in self.nodes)
        return f"amqp://guest:guest@{hosts}/%2F"

    def url_from(self, first: RabbitMQServer) -> str:
        """`url` with `first` listed first (the node clients try first)."""
        order = [first] + [node for node in self.nodes if node is not first]
        hosts = ",".join(f"{_HOST}:{node.port}" for node in order)
        return f"amqp://guest:guest@{hosts}/%2F"

    def start(self) -> RabbitMQCluster:
        deadline = time.monotonic() + self.start_timeout
        try:
            self._start_epmd(deadline)
            assert self._epmd_port is not None
            for index in range(self.size):
                node = RabbitMQServer(
                    base_dir=self._base / f"node{index}",
                    epmd_port=self._epmd_port.port,
                    cookie=self.cookie,
                    start_timeout=max(1.0, deadline - time.monotonic()),
                )
                node.base_dir.mkdir(parents=True, exist_ok=True)
                self.nodes.append(node)
                node.start()
                if index:
                    node.ctl("stop_app")
                    node.ctl("join_cluster", self.nodes[0].node_name)
                    node.ctl("start_app")
            self.wait_running(deadline)
        except BaseException:
            self._keep = True
            self.close()
            raise
        return self

    def _start_epmd(self, deadline: float) -> None:
        self._epmd_port = reserve_port()
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        self._epmd = ManagedProcess.start(
            "epmd",
            [epmd, "-port", str(self._epmd_port.port), "-address", _HOST],
            log_path=self._base / "epmd.log",
            cwd=self._base,
        )
        wait_for_port(_HOST, self._epmd_port.port, deadline, self._epmd)

    def running_nodes(self) -> set[str]:
        """Node names `cluster_status` of a running node reports as running."""
        for node in self.nodes:
            if node.is_running():
                text = node.ctl("cluster_status", "--formatter", "json")
                return set(json.loads(text).get("running_nodes", []))
        return set()

    def wait_running(self, deadline: float) -> None:
        """Wait until every node runs in the cluster."""
        names = {node.node_name for node in self.nodes}
        wait_until(lambda: self.running_nodes() >= names, deadline, f"cluster of {sorted(names)}")

    def _queue_info(self, queue: str, column: str) -> str:
        for node in self.nodes:
            if not node.is_running():
                continue
            listing = node.ctl("list_queues", "name", column, "--no-table-headers", "-q")
            for line in listing.strip().splitlines():
                name, _, value = line.partition("\t")
                if name == queue:
                    return value.strip()
            raise ServiceError(f"queue {queue!r} not found on the cluster")
        raise ServiceError("no node of the cluster is running")

    def members_of(self, queue: str) -> set[str]:
        """Node names holding a replica of quorum queue `queue`."""
        text = self._queue_info(queue, "members").strip("[]")
        return {name.strip() for name in text.split(",") if name.strip()}

    def leader_of(self, queue: str) -> RabbitMQServer:
        """The node that leads quorum queue `queue`."""
        leader = self._queue_info(queue, "leader")
        for node in self.nodes:
            if node.node_name == leader:
                return node
        raise ServiceError(f"queue {queue!r} is led by unknown node {leader!r}")

    def kill(self, node: RabbitMQServer) -> None:
        """SIGKILL `node` (a crash)."""
        node.kill()

    def restart(self, node: RabbitMQServer, timeout: float = 120.0) -> None:
        """Start `node` again on its ports and data; wait until the cluster runs it."""
        deadline = time.monotonic() + timeout
        node.start_timeout = timeout
        node.start()
        self.wait_running(deadline)

    def close(self) -> None:
        try:
            for node in reversed(self.nodes):
                try:
                    node.close()
                except Exception:  # stop the others anyway
                    self._keep = True
        finally:
            if self._epmd is not None:
                self._epmd.stop()
                self._epmd = None
            if self._epmd_port is not None:
                self._epmd_port.release()
                self._epmd_port = None
            if not self._keep:
                shutil.rmtree(self._base, ignore_errors=True)

    def __enter__(self) -> RabbitMQCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
