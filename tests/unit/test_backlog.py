"""The backlog per queue (`fleet.backlog`): ready in the broker + due in the state store,
and `fleet status --json`, on the memory backends (no worker runs: nothing is taken)."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path

import pytest

from fleet import Fleet
from fleet.backlog import Backlog, backlog, backlogs
from fleet.cli import main
from fleet.state import Change
from fleet.status import Status

QUEUES = "default: default\nqueues:\n  default: {}\n  cpu: {}\n"


def _noop() -> None: ...


@pytest.fixture
def app(tmp_path: Path) -> Fleet:
    (tmp_path / "queues.yaml").write_text(QUEUES)
    url = f"memory://{uuid.uuid4().hex}"
    return Fleet(broker_url=url, state_url=url, queues_file=str(tmp_path / "queues.yaml"))


def _held(app: Fleet, queue: str, status: Status, due: float) -> None:
    task = app.task(name=f"held_{uuid.uuid4().hex[:6]}")(_noop)
    records, _ = app.prepare(task, [task.bind((), {})], due=due)
    held = dataclasses.replace(records[0], status=status, queue=queue)
    app.runtime().state.register([held])


def test_backlog_counts_ready_messages_and_due_held_invocations(app: Fleet) -> None:
    task = app.task(queue="cpu")(_noop)
    for _ in range(3):
        task()  # three messages ready in "cpu"
    now = time.time()
    _held(app, "cpu", Status.RETRY, now - 5)  # a retry whose backoff is over: due
    _held(app, "cpu", Status.SCHEDULED, now - 1)  # released at the leader's next tick
    _held(app, "cpu", Status.SCHEDULED, now + 3600)  # not due: no worker can take it
    _held(app, "default", Status.BLOCKED, now - 1)
    _held(app, "ghost", Status.RETRY, now - 1)  # a queue no longer defined still shows
    found = backlogs(app, now)
    assert found["cpu"] == Backlog("cpu", ready=3, due=2)
    assert found["default"] == Backlog("default", ready=0, due=1)
    assert found["ghost"].due == 1
    assert backlog(app) == {"default": 1, "cpu": 5, "ghost": 1}
    app.close()


def test_a_pending_invocation_past_its_publish_deadline_is_due(app: Fleet) -> None:
    task = app.task(queue="cpu")(_noop)
    records, _ = app.prepare(task, [task.bind((), {})])  # registered, never published
    app.runtime().state.register(records)
    assert backlogs(app, time.time())["cpu"].total == 0  # its deadline has not passed
    later = records[0].due + 1 if records[0].due else time.time()
    assert backlogs(app, later)["cpu"] == Backlog("cpu", ready=0, due=1)
    app.close()


def test_status_json_carries_the_backlog(
    app: Fleet, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    task = app.task(queue="cpu")(_noop)
    task()
    _held(app, "cpu", Status.RETRY, time.time() - 1)
    monkeypatch.setattr("fleet.cli.load", lambda path: app)
    assert main(["status", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    cpu = document["queues"]["cpu"]
    assert cpu["backlog"] == {"queue": "cpu", "ready": 1, "due": 1, "stale": 0, "total": 2}
    assert cpu["ready"] == 1 and cpu["defined"] is True
    assert document["invocations"]["PENDING"] == 1 and document["invocations"]["RETRY"] == 1
    assert document["queues"]["default"]["backlog"]["total"] == 0


def test_copies_of_finished_invocations_are_counted_out(app: Fleet) -> None:
    task = app.task(queue="cpu")(_noop)
    task()  # still PENDING: its message is real work
    done = task()
    state = app.runtime().state
    # `done` finished through another copy: its message here is stale.
    claim = Change(done.id, Status.RUNNING, frozenset({Status.PENDING}), by="w")
    assert state.apply([claim]) == [True]
    finish = Change(done.id, Status.SUCCESS, frozenset({Status.RUNNING}), result=b"")
    assert state.apply([finish]) == [True]
    found = backlogs(app)["cpu"]
    assert (found.ready, found.stale, found.total) == (2, 1, 1)
    app.close()
