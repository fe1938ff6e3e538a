"""MongoDB going away and coming back: workers wait for it, retried writes are not lost."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from fleet import Fleet
from fleet.broker import memory
from fleet.errors import StateError
from fleet.state import Change, InvocationRecord
from fleet.state._mongo_docs import change_op
from fleet.state.mongo import MongoStateStore
from fleet.status import Status
from fleet.testing._procs import ManagedProcess, reserve_port, wait_for_port, wait_until
from fleet.testing.mongo import find_secantusd
from fleet.testing.worker import running_worker

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(300)]
S = Status


def double(x: int) -> int:
    return 2 * x


def test_a_worker_started_before_mongodb_works_once_it_is_up(
    tmp_path: Path, mongo_server: object
) -> None:
    if os.environ.get("FLEET_TEST_MONGO_URL"):
        pytest.skip("starts a SecantusDB of its own on a port it chooses")
    port = reserve_port()
    broker = f"mongo-outage-{uuid.uuid4().hex[:8]}"
    app = Fleet(
        broker_url=f"memory://{broker}",
        state_url=f"mongodb://127.0.0.1:{port.port}/fleet_outage",
        connect_timeout=0.3,
        heartbeat_interval=0.2,
    )
    task = app.task(double)
    server: ManagedProcess | None = None
    try:
        with running_worker(app, threads=2) as worker:
            with pytest.raises(StateError, match=r"not reachable within 0\.3s"):
                task(1)  # the caller hears of the outage; the worker keeps running
            port.release()
            (tmp_path / "secantusd.toml").write_text("")
            server = ManagedProcess.start(
                "secantusd-py",
                [
                    find_secantusd(),
                    *("--config", str(tmp_path / "secantusd.toml")),
                    *("--host", "127.0.0.1", "--port", str(port.port)),
                    *("--storage-path", ":memory:"),
                ],
                log_path=tmp_path / "secantusd.log",
                env=dict(os.environ, TMPDIR=str(tmp_path)),
                cwd=tmp_path,
            )
            deadline = time.monotonic() + 60
            wait_for_port("127.0.0.1", port.port, deadline, server)
            assert task(21).result(timeout=60) == 42
            state = app.runtime().state
            wait_until(
                lambda: any(r.id == worker.id for r in state.runners()),
                deadline,
                "the worker's heartbeat after the outage",
                server,
            )
    finally:
        app.close()
        memory.drop(broker)
        port.release()
        if server is not None:
            server.stop(15)


def test_a_retried_change_that_took_effect_reports_true(mongo_db_url: str) -> None:
    """A write whose reply was lost: the caller retries the same Change, and the store
    recognises its own earlier write by the history token instead of reporting a loss."""
    store = MongoStateStore(mongo_db_url)
    try:
        store.register([InvocationRecord("inv-1", "t", "q", b"", "msgpack", S.PENDING)])
        claim = Change("inv-1", S.RUNNING, frozenset({S.PENDING}), by="w1", count_attempt=True)
        other = Change("inv-1", S.RUNNING, frozenset({S.PENDING}), by="w2", count_attempt=True)
        store._remember([claim], ["lost-reply"])  # what apply does when a write fails
        now = time.time()
        store.database()["fleet_invocations"].update_one(*change_op(claim, now, now, "lost-reply"))
        assert store.apply([claim]) == [True]  # the retry: it did take effect
        assert store.apply([other]) == [False]  # a different change is still refused
        assert store.apply([claim, other]) == [False, False]  # nothing remembered now
        (record,) = store.get(["inv-1"])
        assert (record.owner, record.attempt, len(record.history)) == ("w1", 1, 1)
    finally:
        store.close()
