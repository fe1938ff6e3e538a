"""Same-host recovery: which runners of this host are dead, and what a starting worker requeues."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from fleet import Fleet, Status
from fleet.state import Change, RunnerRecord
from fleet.worker import _same_host
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(
    _same_host.host_id() is None, reason="same-host recovery needs Linux /proc"
)
HOST = "test-host"


def _record(pid: int, start: object, *, host: str = HOST, stopped: bool = False) -> RunnerRecord:
    info: dict[str, object] = {"host_id": host, "pid_start": start}
    return RunnerRecord(
        id=f"w:{pid}:{uuid.uuid4().hex[:6]}",
        kind="process",
        host="h",
        pid=pid,
        beat=time.time(),
        stopped=stopped,
        info=info,
    )


def _mine() -> int:
    found = _same_host.process_state(os.getpid())
    assert found is not None
    return found[1]


@pytest.fixture
def exited() -> Iterator[subprocess.Popen[bytes]]:
    """A child that exited and was not reaped: a zombie with its pid still listed."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: (_same_host.process_state(child.pid) or ("", 0))[0] in ("Z", ""))
    yield child
    child.wait()


def test_info_names_this_host_and_process_start() -> None:
    info = _same_host.info()
    assert info == {"host_id": _same_host.host_id(), "pid_start": _mine()}
    assert _same_host.info("pod-7")["host_id"] == "pod-7"
    machine = _same_host.host_id()
    assert machine is not None and machine.count("/") == 2  # hostname/boot id/pid ns


def test_a_live_process_with_its_start_time_is_alive() -> None:
    live = _record(os.getpid(), _mine())
    assert _same_host.dead_here([live], "me", HOST) == []


def test_a_pid_reused_by_another_process_is_dead() -> None:
    reused = _record(os.getpid(), _mine() - 1)  # this pid once ran a process started earlier
    assert _same_host.dead_here([reused], "me", HOST) == [reused]


def test_a_gone_pid_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    found = _same_host.process_state(child.pid)
    child.wait()
    assert found is not None and _same_host.process_state(child.pid) is None
    gone = _record(child.pid, found[1])
    assert _same_host.dead_here([gone], "me", HOST) == [gone]


def test_a_zombie_is_dead(exited: subprocess.Popen[bytes]) -> None:
    found = _same_host.process_state(exited.pid)
    assert found is not None and found[0] == "Z"
    zombie = _record(exited.pid, found[1])
    assert _same_host.dead_here([zombie], "me", HOST) == [zombie]


def test_other_hosts_stopped_runners_itself_and_old_records_are_ignored() -> None:
    gone = 2**22 + 1  # above the kernel's pid_max limit: never a live pid
    other = _record(gone, 1, host="elsewhere")
    stopped = _record(gone, 1, stopped=True)
    old = RunnerRecord(id="old", kind="process", host="h", pid=gone, beat=0.0)
    dead = _record(gone, 1)
    runners = [other, stopped, old, dead]
    assert _same_host.dead_here(runners, "me", HOST) == [dead]
    assert _same_host.dead_here(runners, dead.id, HOST) == []


def test_a_starting_worker_requeues_what_dead_runners_of_its_host_owned() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    app = Fleet(broker_url=url, state_url=url, host_id=HOST)
    task = app.task(name="job")(lambda: None)
    state = app.runtime().state
    dead, live = _record(2**22 + 1, 1), _record(os.getpid(), _mine())
    elsewhere = _record(2**22 + 2, 1, host="elsewhere")
    state.beat([dead, live, elsewhere])
    owners = {}
    for runner in (dead, live, elsewhere):
        handle = task()
        claim = Change(handle.id, Status.RUNNING, frozenset({Status.PENDING}), by=runner.id)
        assert state.apply([claim]) == [True]
        owners[runner.id] = handle.id

    assert _same_host.recover_dead(app, "starting-supervisor") == 1

    records = {r.owner or r.id: r for r in state.get(list(owners.values()))}
    requeued = state.get([owners[dead.id]])[0]
    assert requeued.status is Status.PENDING
    assert requeued.history[-1].note == _same_host.NOTE
    assert records[live.id].status is Status.RUNNING
    assert records[elsewhere.id].status is Status.RUNNING
    marked = {r.id: r for r in state.runners()}
    assert marked[dead.id].stopped
    assert marked[dead.id].info["found_dead_by"] == "starting-supervisor"
    assert not marked[live.id].stopped and not marked[elsewhere.id].stopped
    assert _same_host.recover_dead(app, "starting-supervisor") == 0  # once only
    app.close()
