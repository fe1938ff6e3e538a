"""Concurrency options on `@app.task`, end to end on the memory stack and inline.

The built-in extension applies the options with no set-up: registration limits and
idempotency keys reuse invocations, the result cache returns results without running,
running limits park invocations BLOCKED until the running one ends, rate limits defer.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

import pytest

from fleet import Fleet, Status
from fleet.concurrency import Limit, Mode
from fleet.errors import ExtensionError, TaskDefinitionError, WaitCycleError
from fleet.state import Change, InvocationRecord, Query
from fleet.testing.worker import running_worker
from tests.waiting import wait_until

URL = f"memory://{uuid.uuid4().hex}"
app = Fleet("conc", broker_url=URL, state_url=URL, schedule_interval=0.05)
gate = threading.Event()
runs: list[tuple[str, Any]] = []
lock = threading.Lock()


def ran(name: str, value: Any) -> None:
    with lock:
        runs.append((name, value))


@app.task(registration_concurrency="TASK")
def refresh(n: int) -> int:
    ran("refresh", n)
    gate.wait(10)
    return n


@app.task(registration_concurrency=Mode.KEYS, key_arguments=("user",), on_diff_non_key_args="raise")
def sync_user(user: str, full: bool = False) -> str:
    gate.wait(10)
    return f"{user}:{full}"


@app.task(call_result_cache=True, cache_ttl=60, disable_cache_args=("trace",))
def price(item: str, trace: str = "") -> int:
    ran("price", item)
    return len(item)


@app.task
def charge(order: int) -> int:
    ran("charge", order)
    return order * 10


@app.task(running_concurrency=Limit(Mode.KEYS, limit=1), key_arguments=("account",))
def post(account: str, n: int) -> tuple[float, float]:
    start = time.time()
    time.sleep(0.01)
    return start, time.time()


@app.task(rate_limit="5/s")
def ping(n: int) -> float:
    return time.time()


def registered(task: str) -> list[Any]:
    return app.runtime().state.find(Query(task=task))


def test_unknown_options_are_refused_naming_their_owner() -> None:
    with pytest.raises(TaskDefinitionError, match=r"'rate_limit' \(owned by AppConcurrency\)"):

        @app.task(name="pkg.f", rate_limt="5/s")
        def f() -> None: ...


def test_bad_values_are_refused_at_decoration_naming_the_task() -> None:
    with pytest.raises(TaskDefinitionError, match=r"task 'pkg.g'.*key_arguments"):

        @app.task(name="pkg.g", registration_concurrency="KEYS")
        def g(user: str) -> None: ...

    with pytest.raises(TaskDefinitionError, match="does not take"):

        @app.task(name="pkg.h", rate_limit="1/s", rate_limit_key=("tenant",))
        def h(user: str) -> None: ...


def test_registration_task_mode_reuses_the_pending_invocation_then_frees_the_key() -> None:
    gate.clear()
    first = refresh(1)
    again = refresh(2)  # other arguments, same task: TASK mode reuses it
    batch = refresh.parallelize([3, 4])
    assert again.id == first.id and [i.id for i in batch.invocations] == [first.id] * 2
    with running_worker(app):
        gate.set()
        assert again.result(timeout=10) == 1
        wait_until(lambda: refresh(5).id != first.id, timeout=10)  # ended: a new one
    assert len(registered(refresh.name)) == 2


def test_keys_mode_with_different_other_arguments_raises_naming_them() -> None:
    gate.clear()
    first = sync_user("ann")
    assert sync_user("ann").id == first.id
    assert sync_user("bob").id != first.id
    with pytest.raises(ExtensionError, match=r"different \['full'\]"):
        sync_user("ann", full=True)
    with running_worker(app):
        gate.set()
        assert first.result(timeout=10) == "ann:False"


def test_the_result_cache_returns_a_success_without_running() -> None:
    runs.clear()
    with running_worker(app):
        assert price("pen", trace="a").result(timeout=10) == 3
        cached = price("pen", trace="b")  # trace is left out of the key
        assert cached.result(timeout=10) == 3
        assert price("book").result(timeout=10) == 4
    assert runs.count(("price", "pen")) == 1


def test_an_idempotency_key_yields_one_execution_also_after_it_finished() -> None:
    runs.clear()
    with running_worker(app):
        first = charge.call_with(idempotency_key="order-7")(7)
        assert first.result(timeout=10) == 70
        later = charge.call_with(idempotency_key="order-7")(7)
        assert later.id == first.id and later.result(timeout=10) == 70
        other = charge.call_with(idempotency_key="order-8")(7)
        assert other.id != first.id
        other.result(timeout=10)
    assert runs.count(("charge", 7)) == 2
    with pytest.raises(TypeError, match="idempotency_key"):
        charge.call_with(idempotency_key="")


def test_a_running_limit_never_runs_two_of_one_key_and_parks_the_others_blocked() -> None:
    with running_worker(app, threads=4):
        calls = post.parallelize([("a", i) for i in range(6)] + [("b", i) for i in range(6)])
        spans = calls.results(timeout=30)
    by_key = {"a": sorted(spans[:6]), "b": sorted(spans[6:])}
    for ordered in by_key.values():
        assert all(e <= s for (_, e), (s, _) in itertools.pairwise(ordered))
    notes = [h.note for i in calls.invocations for h in i.history if h.status is Status.BLOCKED]
    assert notes and all(n.startswith("running_concurrency KEYS") for n in notes)


def test_fleet_status_counts_blocked_and_deferred_per_task(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fleet.cli import main

    state = app.runtime().state
    held = [post.name, post.name, ping.name]
    notes = ["running_concurrency KEYS (limit 1): held by x", "running_concurrency", "rate_limit 5"]
    records = [
        InvocationRecord(uuid.uuid4().hex, task, "default", b"", "msgpack", Status.PENDING)
        for task in held
    ]
    state.register(records)
    state.apply(
        [
            Change(r.id, Status.BLOCKED, frozenset({Status.PENDING}), note=n)
            for r, n in zip(records, notes, strict=True)
        ]
    )
    try:
        assert main(["status", "--app", f"{__name__}:app"]) == 0
        out = capsys.readouterr().out.split("(BLOCKED):\n", 1)[1].split("triggers:")[0]
        lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
        assert lines[post.name] == ["blocked", "2", "deferred", "0"]
        assert lines[ping.name] == ["blocked", "0", "deferred", "1"]
    finally:
        cancel = [Change(r.id, Status.CANCELLED, frozenset({Status.BLOCKED})) for r in records]
        state.apply(cancel)


def test_a_rate_limit_defers_the_calls_over_budget() -> None:
    with running_worker(app, threads=4):
        calls = ping.parallelize(range(8))
        starts = sorted(calls.results(timeout=30))
    assert starts[5] - starts[0] >= 0.9  # 5 per second: the sixth waits for the window
    deferred = [h.note for i in calls.invocations for h in i.history if h.status is Status.BLOCKED]
    assert deferred and all(n.startswith("rate_limit 5/1s: deferred") for n in deferred)


# -- inline mode ------------------------------------------------------------------------

inline = Fleet("conc-inline", inline=True)
inline_gate = threading.Event()


@inline.task(registration_concurrency="ARGUMENTS")
def slow(n: int) -> int:
    ran("slow", n)
    inline_gate.wait(10)
    return n


@inline.task(call_result_cache=True)
def square(n: int) -> int:
    ran("square", n)
    return n * n


@inline.task(registration_concurrency="TASK")
def recurse(n: int) -> int:
    return n if n == 0 else recurse(n - 1).result()


def test_inline_registration_reuses_a_call_still_running_in_another_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="fleet._inline")
    runs.clear()
    inline_gate.clear()
    got: list[Any] = []
    first = threading.Thread(target=lambda: got.append(slow(1)))
    first.start()
    wait_until(lambda: ("slow", 1) in runs, timeout=10)
    second = threading.Thread(target=lambda: got.append(slow(1)))
    second.start()
    wait_until(lambda: any("reuses" in r.getMessage() for r in caplog.records), timeout=10)
    inline_gate.set()
    first.join(10)
    second.join(10)
    assert runs.count(("slow", 1)) == 1
    assert len({h.id for h in got}) == 1 and [h.result() for h in got] == [1, 1]
    assert slow(1).result() == 1 and runs.count(("slow", 1)) == 2  # ended: runs again


def test_inline_cache_and_idempotency_keys_apply() -> None:
    runs.clear()
    assert square(3).result() == square(3).result() == 9
    assert runs.count(("square", 3)) == 1
    a = square.call_with(idempotency_key="k")(4)
    b = square.call_with(idempotency_key="k")(5)
    assert a.id == b.id and b.result() == 16


def test_inline_a_call_that_would_reuse_its_own_caller_raises() -> None:
    with pytest.raises(WaitCycleError, match="wait on itself"):
        recurse(2).result()
