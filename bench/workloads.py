"""W1-W4, idle CPU and state round trips against one fleet configuration.

Job: in a process whose `FLEET__*` environment names a fresh configuration (see
`bench.configs.fleet_env`), start a real worker pool (`fleet worker`, separate OS
processes), warm it up, and measure one workload `plan.reps` times.

Contract: every function takes the bench tasks module, the plan, a `Recorder` and the
pool, and records one value per repetition. A run on RabbitMQ deletes its queues at
the end (as the baselines do). Results are checked (a wrong value fails
the run); timeouts are generous and only guard against hangs: nothing here asserts on
speed. Round trips (`rt`) run on a pool of ONE worker process, so that the `counters`
task always reads the counters of the process that ran the measured invocations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import signing_load, stale_copies, trigger_load, workflow_load
from bench.measure import (
    THREADED,
    CpuMeter,
    Plan,
    Recorder,
    broker_pids,
    idle_cpu_percent,
    percentile,
    threaded_rate,
)
from bench.procs import Pool, fleet_pool
from fleet.invocation import Group

TIMEOUT = 300.0
APP = "bench.tasks:app"


def wait_consumers(tasks: ModuleType, pool: Pool, count: int, timeout: float = 60.0) -> None:
    """Block until the app's default queue has `count` consumers (or the pool died)."""
    app = tasks.app
    broker = app.runtime().broker
    deadline = time.monotonic() + timeout
    while broker.stats(app.settings.default_queue).consumers < count:
        pool.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} consumers after {timeout}s")
        time.sleep(0.02)


def fib_value(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def w1(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    """Throughput of `noop`: one call per task, then the same as one `parallelize` batch."""
    n = plan.w1_tasks
    Group([tasks.noop(i) for i in range(plan.w1_warmup)]).results(TIMEOUT)
    tasks.noop.parallelize(range(plan.w1_warmup)).results(TIMEOUT)
    for _ in range(plan.reps):
        with CpuMeter([pool.pid], broker_pids()) as cpu:
            start = time.perf_counter()
            handles = [tasks.noop(i) for i in range(n)]
            submitted = time.perf_counter()
            values = Group(handles).results(TIMEOUT)
            done = time.perf_counter()
        assert values == list(range(n)), "W1 returned wrong values"
        rec.add("throughput", "tasks/s", n / (done - start), "higher")
        rec.add("submit rate", "tasks/s", n / (submitted - start), "higher")
        cpu.record(rec, n)
        del handles
        start = time.perf_counter()
        group = tasks.noop.parallelize(range(n))
        submitted = time.perf_counter()
        values = group.results(TIMEOUT)
        done = time.perf_counter()
        assert values == list(range(n)), "W1 batch returned wrong values"
        rec.add("batch throughput", "tasks/s", n / (done - start), "higher")
        rec.add("batch submit rate", "tasks/s", n / (submitted - start), "higher")
        rate = threaded_rate(
            plan.producer_threads,
            n,
            lambda part: Group([tasks.noop(i) for i in part]).results(TIMEOUT),
        )
        rec.add(THREADED, "tasks/s", rate, "higher")


def w2(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    """Sequential round trips: call, block for the result."""
    for i in range(plan.w2_warmup):
        tasks.noop(i).result(TIMEOUT)
    for _ in range(plan.reps):
        latencies = []
        for i in range(plan.w2_calls):
            start = time.perf_counter()
            value = tasks.noop(i).result(TIMEOUT)
            latencies.append(time.perf_counter() - start)
            assert value == i, "W2 returned a wrong value"
        rec.add("p50", "ms", 1000 * percentile(latencies, 50))
        rec.add("p99", "ms", 1000 * percentile(latencies, 99))


def w3(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    """I/O fan-out: sleeps on every slot; wall time against perfect scheduling."""
    Group([tasks.sleeper(0.01) for _ in range(plan.slots)]).results(TIMEOUT)
    for _ in range(plan.reps):
        start = time.perf_counter()
        Group([tasks.sleeper(plan.w3_sleep) for _ in range(plan.w3_tasks)]).results(TIMEOUT)
        wall = time.perf_counter() - start
        rec.add("wall", "s", wall)
        rec.add("vs ideal", "x", wall / plan.w3_ideal)


def w4(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    """Recursive fan-out: fib(n) as tasks waiting on tasks."""
    assert tasks.fib(plan.w4_warmup_n).result(TIMEOUT) == fib_value(plan.w4_warmup_n)
    for _ in range(plan.reps):
        start = time.perf_counter()
        value = tasks.fib(plan.w4_n).result(TIMEOUT)
        rec.add("wall", "s", time.perf_counter() - start)
        assert value == fib_value(plan.w4_n), "W4 returned a wrong value"
    rec.add("invocations", "per run", 2 * fib_value(plan.w4_n + 1) - 1)
    rec.note(f"fib({plan.w4_n}) completed in every repetition (no deadlock)")


def idle(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    """CPU of the whole pool (supervisor and worker processes) while nothing happens."""
    Group([tasks.noop(i) for i in range(plan.slots * 2)]).results(TIMEOUT)
    time.sleep(plan.idle_settle)  # let the pool settle after its last task (not a wait)
    for _ in range(plan.reps):
        percent, processes = idle_cpu_percent([pool.pid], plan.idle_seconds)
        rec.add("CPU", "% of a core", percent)
    rec.note(f"measured over {plan.idle_seconds:g} s on {processes} processes")


def _producer_counts(tasks: ModuleType) -> dict[str, int]:
    runtime = tasks.app.runtime()
    return {
        part: int(getattr(backend, "statements", -1))
        for part, backend in (("state", runtime.state), ("broker", runtime.broker))
    }


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    return {k: int(after[k]) - int(before[k]) for k in ("state", "broker")}


def rt(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    """SQLite statements per invocation, producer side and worker side."""
    for i in range(plan.w2_warmup):
        tasks.noop(i).result(TIMEOUT)
    probe = tasks.counters

    def single() -> None:
        for i in range(plan.rt_single):
            tasks.noop(i).result(TIMEOUT)

    def batch() -> None:
        tasks.noop.parallelize(range(plan.rt_batch)).results(TIMEOUT)

    runs = [("single", plan.rt_single, single), (f"batch of {plan.rt_batch}", plan.rt_batch, batch)]
    for _ in range(plan.reps):
        # Two probes in a row differ by exactly one invocation's worker-side work (the
        # first probe's commit, the second's receive and claim): that is the probe cost.
        first = probe().result(TIMEOUT)
        second = probe().result(TIMEOUT)
        cost = _delta(second, first)
        for label, n, run in runs:
            before_worker = probe().result(TIMEOUT)
            before = _producer_counts(tasks)
            run()
            produced = _delta(_producer_counts(tasks), before)
            worked = _delta(probe().result(TIMEOUT), before_worker)
            assert worked.keys() == cost.keys()
            for side, counts in (("producer", produced), ("worker", worked)):
                for part in ("state", "broker"):
                    value = counts[part]
                    if side == "worker":
                        value -= cost[part]
                    if _counted(tasks, part):
                        rec.add(f"{label}: {side} {part}", "statements/inv", value / n)
    rec.note(
        "worker side read inside the single worker process by the `counters` task; "
        "the cost of one probe invocation is measured and subtracted"
    )


def _counted(tasks: ModuleType, part: str) -> bool:
    runtime = tasks.app.runtime()
    return hasattr(runtime.state if part == "state" else runtime.broker, "statements")


WORKLOADS: dict[str, Callable[[ModuleType, Plan, Recorder, Pool], None]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "idle": idle,
    "rt": rt,
    "triggers": trigger_load.triggers,
    "stale": stale_copies.stale,
    "workflows": workflow_load.workflows,
}


def run(workload: str, plan: Plan, rec: Recorder, log_path: Path, env: dict[str, str]) -> None:
    """Start a pool for `workload` (env: this configuration), measure, stop the pool."""
    from bench import tasks

    if workload == "signing":  # two pools of its own (signing off and on)
        try:
            signing_load.signing(plan, rec, log_path, env)
        finally:
            tasks.app.close()
            delete_queues(env)
        return
    if workload == "metrics":  # two kinds of pools, started by the workload itself
        from bench import metrics_load

        try:
            metrics_load.run(tasks, plan, rec, log_path, env)
        finally:
            tasks.app.close()
        return
    processes = 1 if workload == "rt" else plan.processes
    pool = fleet_pool(processes, plan.threads, env, log_path, APP)
    try:
        with pool:
            wait_consumers(tasks, pool, processes)
            WORKLOADS[workload](tasks, plan, rec, pool)
    finally:
        tasks.app.close()
        delete_queues(env)


def delete_queues(env: dict[str, str]) -> None:
    """Delete the run's queues from RabbitMQ, as the baselines delete theirs: quorum
    queues left behind by earlier runs would keep working in the node (one Raft member
    each) and load the runs that follow."""
    url = env.get("FLEET__BROKER_URL", "")
    if not url.startswith(("amqp://", "amqps://")):
        return
    import pika

    queue = env["FLEET__DEFAULT_QUEUE"]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in (queue, f"{queue}.urgent", f"{queue}.dead"):
            channel.queue_delete(name)
        channel.exchange_delete(f"{queue}.dlx")
    finally:
        connection.close()
