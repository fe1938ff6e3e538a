"""The `triggers` workload: what defined triggers cost the hot path, and how late cron is.

Job: on one fleet configuration's pool (see `bench.workloads.run`), measure
1. W1 throughput (one call per task, as in W1) with no triggers defined and with 100
   triggers watching tasks that never run, alternating per repetition; the overhead is
   the relative loss of throughput (issue 11's target: <= 5 %);
2. the delay from a cron tick to the start of the invocation it triggered, over
   `plan.cron_ticks` ticks of a trigger firing every second (target: p50 <= 1 s on the
   embedded stack), with the pool's default leader interval (`schedule_interval`).

Contract: records `W1 throughput, no triggers`, `W1 throughput, 100 triggers`,
`overhead, 100 triggers` (percent, per repetition) and `cron delay p50` / `p99` (ms).
The triggers it adds are removed before it returns. Results are checked, speed never.
"""

from __future__ import annotations

import time
from types import ModuleType

from bench.measure import Plan, Recorder, percentile
from bench.procs import Pool
from fleet import Status, Trigger
from fleet.invocation import Group
from fleet.state import Query

TIMEOUT = 300.0
UNRELATED = 100
SETTLE = 2.5
"""Seconds for every process to reload its watched set (the engine's `refresh` is 2 s)."""


def _throughput(tasks: ModuleType, n: int) -> float:
    start = time.perf_counter()
    values = Group([tasks.noop(i) for i in range(n)]).results(TIMEOUT)
    took = time.perf_counter() - start
    assert values == list(range(n)), "W1 returned wrong values"
    return n / took


def triggers(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    app = tasks.app
    Group([tasks.noop(i) for i in range(plan.w1_warmup)]).results(TIMEOUT)
    unrelated = [
        Trigger.on_result(f"bench.unrelated.task_{i}", name=f"unrelated-{i}")
        for i in range(UNRELATED)
    ]
    for _ in range(plan.reps):
        time.sleep(SETTLE)  # the pool sees no triggers (a settle, not a wait on a result)
        without = _throughput(tasks, plan.w1_tasks)
        ids = [app.triggers.add(tasks.noop, t).id for t in unrelated]
        time.sleep(SETTLE)  # the pool sees the 100 triggers
        with_them = _throughput(tasks, plan.w1_tasks)
        for trigger_id in ids:
            app.triggers.remove(trigger_id)
        rec.add("W1 throughput, no triggers", "tasks/s", without, "higher")
        rec.add(f"W1 throughput, {UNRELATED} triggers", "tasks/s", with_them, "higher")
        rec.add(f"overhead, {UNRELATED} triggers", "%", 100 * (1 - with_them / without))
    delays = cron_delays(tasks, plan.cron_ticks)
    rec.add("cron delay p50", "ms", 1000 * percentile(delays, 50))
    rec.add("cron delay p99", "ms", 1000 * percentile(delays, 99))
    rec.note(
        f"cron: {len(delays)} ticks of a trigger firing every second, delay from the tick"
        " to the start of the triggered invocation"
    )


def cron_delays(tasks: ModuleType, ticks: int) -> list[float]:
    """Seconds from tick to run start, for the first `ticks` ticks of a cron trigger."""
    app = tasks.app
    every_second = Trigger.cron("* * * * * *", name="bench-cron", derive={"tick": "source"})
    definition = app.triggers.add(tasks.stamp, every_second)
    state = app.runtime().state
    query = Query(statuses=[Status.SUCCESS], task=tasks.stamp.name)
    deadline = time.monotonic() + 60 + 2 * ticks
    try:
        while len(done := state.find(query)) < ticks:
            assert time.monotonic() < deadline, f"fewer than {ticks} cron runs in time"
            time.sleep(0.2)
    finally:
        app.triggers.remove(definition.id)
    delays = sorted((r for r in done if r.result is not None), key=lambda r: r.created)
    return [float(app.codec.decode(r.result)) for r in delays[:ticks] if r.result is not None]
