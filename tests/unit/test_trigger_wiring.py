"""Triggers wired into the app: transitions, inline mode, a worker on the memory stack."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from fleet import Fleet, Status, Trigger
from fleet._transitions import apply
from fleet.errors import DuplicateInvocationError, TaskDefinitionError
from fleet.extensions import Applied, Dispatcher, Extension
from fleet.state import Change, InvocationRecord
from fleet.state.memory import MemoryStateStore
from fleet.testing.worker import running_worker
from fleet.worker.leader import Leader
from tests.waiting import wait_until


class Seen(Extension):
    def __init__(self) -> None:
        self.applied: list[Applied] = []

    def after_change(self, applied: Applied) -> None:
        self.applied.append(applied)


def record(i: str, status: Status = Status.PENDING) -> InvocationRecord:
    return InvocationRecord(i, "pkg.t", "q", b"", "msgpack", status)


def test_apply_reports_only_the_changes_that_took_effect() -> None:
    state = MemoryStateStore(f"memory://{uuid.uuid4().hex}")
    state.register([record("a"), record("b", Status.SCHEDULED)])
    seen = Seen()
    changes = [
        Change(i, Status.CANCELLED, frozenset({Status.PENDING}), note="x") for i in ("a", "b")
    ]  # b is SCHEDULED: its change does not take effect
    assert apply(state, changes, Dispatcher([seen]), ["pkg.a", "pkg.b"]) == [True, False]
    (applied,) = seen.applied
    (change,) = applied.changes
    assert (change.invocation_id, change.task, change.source, change.status, change.note) == (
        "a",
        "pkg.a",
        Status.PENDING,
        Status.CANCELLED,
        "x",
    )
    # Nothing took effect: no hook call.
    assert apply(state, changes, Dispatcher([seen]), "pkg.a") == [False, False]
    assert len(seen.applied) == 1


def test_unknown_task_options_are_still_refused() -> None:
    app = Fleet(inline=True)
    with pytest.raises(TaskDefinitionError, match="triggerz"):

        @app.task(name="pkg.f", triggerz=[])
        def f() -> None: ...


# -- inline mode: outcome and event triggers run inline ------------------------------------

inline = Fleet("inline-triggers", inline=True)
ran: list[tuple[str, Any]] = []


@inline.task
def step_a(n: int) -> int:
    ran.append(("a", n))
    return n + 1


@inline.task(triggers=[Trigger.on_result(step_a, derive={"n": "result"})])
def step_b(n: int) -> int:
    ran.append(("b", n))
    return n * 10


@inline.task(triggers=[Trigger.on_result(step_b, derive={"n": "result"})])
def step_c(n: int) -> None:
    ran.append(("c", n))


@inline.task(triggers=[Trigger.on_event("order.paid", derive={"order": "payload.order_id"})])
def on_paid(order: int) -> None:
    ran.append(("paid", order))


def test_inline_a_result_chain_runs_once_per_source() -> None:
    ran.clear()
    step_a(1)
    step_a(5)
    assert ran == [("a", 1), ("b", 2), ("c", 20), ("a", 5), ("b", 6), ("c", 60)]


def test_inline_events_start_their_triggers() -> None:
    ran.clear()
    event_id = inline.emit("order.paid", {"order_id": 7})
    inline.emit("order.shipped", {"order_id": 8})
    assert event_id and ran == [("paid", 7)]


def test_inline_run_time_triggers_and_manual_firing() -> None:
    ran.clear()
    d = inline.triggers.add(on_paid, Trigger.on_event("order.refunded", kwargs={"order": 0}))
    assert d in inline.triggers.list()
    inline.emit("order.refunded")
    assert inline.triggers.fire(d.id)
    inline.triggers.pause(d.id)
    inline.emit("order.refunded")
    assert ran == [("paid", 0), ("paid", 0)]
    assert len(inline.triggers.show(d.id).firings) == 2
    assert inline.triggers.remove(d.id)


# -- a worker on the memory stack ----------------------------------------------------------

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet("wired", broker_url=URL, state_url=URL, schedule_interval=0.05)
done: list[tuple[str, Any]] = []


@app.task
def extract(n: int) -> int:
    return n * 2


@app.task
def unwatched() -> None: ...


@app.task
def crash(n: int) -> int:
    raise KeyError(n)


@app.task(
    triggers=[
        Trigger.on_result(extract, derive={"rows": "result"}),
        Trigger.on_exception(crash, LookupError, kwargs={"rows": -1}),
    ]
)
def load(rows: int) -> None:
    done.append(("load", rows))


@app.task
def emitter(n: int) -> None:
    app.emit("wired.ping", {"n": n})


@app.task(triggers=[Trigger.on_event("wired.ping", derive={"n": "payload.n"})])
def pinged(n: int) -> None:
    done.append(("pinged", n))


@app.task(triggers=[Trigger.cron("* * * * * *")])
def tick() -> None:
    done.append(("tick", 0))


def test_a_preset_id_is_used_and_a_registered_one_refused() -> None:
    preset = uuid.uuid4().hex
    (inv,) = app.submit(unwatched, [unwatched.bind((), {})], ids=[preset])
    assert inv.id == preset
    with pytest.raises(DuplicateInvocationError):
        app.submit(unwatched, [unwatched.bind((), {})], ids=[preset])
    # The refused submit wrote nothing and did not touch the record it collided with.
    assert app.record(preset).status is Status.PENDING


def test_outcomes_committed_by_a_worker_fire_their_triggers() -> None:
    done.clear()
    with running_worker(app):
        extract(4).result(timeout=10)
        with pytest.raises(KeyError):
            crash(1).result(timeout=10)
        wait_until(lambda: {("load", -1), ("load", 8)} <= set(done), timeout=10)
        app.emit("nobody.listens")
    assert done.count(("load", 8)) == done.count(("load", -1)) == 1


def tick_now(leader: Leader, every: float = 0.1) -> bool:
    """Tick the leader at most every `every` seconds (the check runs every millisecond)."""
    now = time.monotonic()
    if now - ticked[0] >= every:
        ticked[0] = now
        leader.tick()
    return True


ticked = [0.0]


def test_the_leader_ticks_cron_triggers() -> None:
    done.clear()
    leader = Leader(app, "runner-1")
    with running_worker(app):
        leader.tick()
        wait_until(lambda: app.triggers.list(kind="cron") != [], timeout=5)
        wait_until(lambda: tick_now(leader) and ("tick", 0) in done, "a cron firing", 10)
    (cron,) = app.triggers.list(kind="cron")
    assert app.triggers.show(cron.id).next_time is not None


def test_the_leaders_sweep_fires_for_an_outcome_nobody_evaluated() -> None:
    """A process that committed an outcome and died before evaluating it: the leader's
    sweep evaluates it again later (once: the firing record makes a second one a no-op)."""
    done.clear()
    state = app.runtime().state
    lost = uuid.uuid4().hex
    app.submit(extract, [extract.bind((21,), {})], ids=[lost])
    claim = Change(lost, Status.RUNNING, frozenset({Status.PENDING}), by="gone")
    result = app.codec.encode(42)
    commit = Change(lost, Status.SUCCESS, frozenset({Status.RUNNING}), by="gone", result=result)
    assert state.apply([claim]) == [True] and state.apply([commit]) == [True]  # no hooks
    leader = Leader(app, "runner-1")  # the lease holder of the test above
    with running_worker(app):
        leader.tick(now=time.time() + 120)  # the sweep looks at what is older than grace
        wait_until(lambda: ("load", 42) in done, "the swept firing", 10)
        leader.tick(now=time.time() + 121)
    assert done.count(("load", 42)) == 1


def test_a_trigger_fired_inside_a_task_starts_a_top_level_call() -> None:
    done.clear()
    with running_worker(app):
        emitter(5).result(timeout=10)
        wait_until(lambda: ("pinged", 5) in done, "the event's trigger", 10)
    (trigger,) = app.triggers.list(kind="event")
    (firing,) = app.triggers.show(trigger.id).firings
    assert app.record(firing.invocation).parent == ""
