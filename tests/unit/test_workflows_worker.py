"""Workflows on a worker (in-memory stack): sub-workflows and their runs, data seen by
child tasks, cancellation of pending children, a crash between submit and record."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import Fleet, Status
from fleet import workflows as wf
from fleet.testing.worker import running_worker
from fleet.worker.leader import Leader
from fleet.workflows._runtime import child_id
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet(
    broker_url=URL,
    state_url=URL,
    schedule_interval=0.02,
    recovery_interval=0.02,
    shutdown_grace=2,
    queues_file=str(Path(__file__).with_name("worker_queues.yaml")),
)
release = threading.Event()
ran: dict[str, int] = {}


@app.task
def note(key: str, value: int) -> int:
    ran[key] = ran.get(key, 0) + 1
    wf.set(key, value)  # a child task writes its run's data
    return value


@app.task
def count(key: str, value: int) -> int:
    ran[key] = ran.get(key, 0) + 1
    return value


@app.task
def blocked() -> str:
    release.wait(30)
    return "released"


@app.workflow
def inner(key: str) -> str:
    note(key, 1).result()
    return f"{wf.run_id()}"


@app.workflow(force_new_workflow=True)
def separate(key: str) -> str:
    note(key, 2).result()
    return f"{wf.run_id()}"


@app.workflow
def outer() -> list[str]:
    wf.set("outer", True)
    return [inner("in").result(), separate("sep").result(), wf.run_id()]


@app.workflow
def waits_on_blocked() -> str:
    return str(blocked().result())


@pytest.fixture(scope="module", autouse=True)
def worker() -> Iterator[None]:
    leader = Leader(app, "test-leader")  # releases suspended workflows when due
    leader.start()
    with running_worker(app, threads=4):
        yield
    leader.stop()


def test_sub_workflows_share_the_run_unless_forced_new() -> None:
    handle = outer()
    inner_run, separate_run, outer_run = handle.result(timeout=30)
    assert outer_run == handle.id and inner_run == handle.id
    assert separate_run != handle.id
    run = app.workflow_run(handle.id)
    assert run.data == {"outer": True, "in": 1}  # the sub-workflow's child wrote here
    assert app.workflow_run(separate_run).data == {"sep": 2}
    inner_id, separate_id = run.children
    assert app.record(inner_id).parent == handle.id
    assert app.record(separate_id).parent == handle.id
    store = app._workflows().store()
    assert store.run_of(inner_id) == handle.id
    (grandchild,) = app.workflow_run(inner_id).children
    assert store.run_of(grandchild) == handle.id and app.record(grandchild).parent == inner_id


def test_cancelling_a_workflow_cancels_its_pending_children() -> None:
    release.clear()
    handle = waits_on_blocked()
    run = app.workflow_run(handle.id)
    wait_until(lambda: run.children, "the child submitted")
    (child,) = run.children
    wait_until(lambda: app.record(child).status is Status.RUNNING, "the child running")
    assert run.cancel()
    wait_until(lambda: app.record(child).status is Status.CANCELLED, "the child cancelled")
    release.set()


def test_a_child_submitted_but_not_recorded_is_not_submitted_again() -> None:
    """An attempt that died between submitting a step and recording it: the next
    attempt finds the child under its derived id and does not call it again."""
    history = uuid.uuid4().hex
    ran.pop("pre", None)
    first = app.submit(count, [count.bind(("pre", 5), {})], ids=[child_id(history, 0, 0)])
    assert first[0].result(timeout=30) == 5
    assert ran["pre"] == 1
    runtime = wf.WorkflowRuntime(app, app._workflows().store(), history, history, attempt=2)
    (handle,) = runtime.submit(count, [count.bind(("pre", 5), {})], None)
    assert handle.id == first[0].id and handle.result(timeout=30) == 5
    assert ran["pre"] == 1
    assert [e.ids for e in app._workflows().store().load(history)] == [(handle.id,)]


@app.workflow
def quick_child() -> object:
    note("early", 3).result()
    return wf.get("early")


def test_a_child_that_runs_before_its_step_is_recorded_finds_its_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step is recorded after the submit: the child may run (and use workflow data)
    first; it finds its run through its parent."""
    store = app._workflows().store()
    append = store.append

    def late_append(history: str, run: str, event: wf.Event) -> None:
        if event.kind == "call":
            wait_until(lambda: "early" in ran, "the child ran before its step is recorded")
        append(history, run, event)

    monkeypatch.setattr(store, "append", late_append)
    handle = quick_child()
    assert handle.result(timeout=30) == 3
    assert app.workflow_run(handle.id).data == {"early": 3}


@app.workflow
def approval(timeout: float) -> object:
    wf.set("asked", True)
    return wf.wait_signal("approved", timeout=timeout)


def test_a_signal_wait_times_out_with_a_clear_error_on_a_worker() -> None:
    handle = approval(0.3)
    with pytest.raises(wf.SignalTimeoutError, match="'approved'"):
        handle.result(timeout=30)
    assert [h.status for h in handle.history].count(Status.RETRY) == 1  # it suspended


def test_a_suspended_workflow_is_woken_by_its_signal() -> None:
    handle = approval(600)
    wait_until(lambda: handle.status is Status.RETRY, "the workflow suspended")
    app.workflow_run(handle.id).signal("approved", {"by": "ann"})
    assert handle.result(timeout=30) == {"by": "ann"}


def test_a_signal_sent_before_the_wait_is_taken() -> None:
    release.clear()
    handle = early_signal()
    app.workflow_run(handle.id).signal("go", 1)
    app.workflow_run(handle.id).signal("go", 2)
    release.set()
    assert handle.result(timeout=30) == [1, 2]


@app.workflow
def early_signal() -> list[object]:
    blocked().result()
    return [wf.wait_signal("go"), wf.wait_signal("go")]
