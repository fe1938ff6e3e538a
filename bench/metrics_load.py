"""The `metrics` workload: what Prometheus metrics cost the hot path (issue 14's target:
W1 with metrics at most 5 % slower than without).

Job: on the embedded stack, alternate W1 (one call per task, as in W1) on a pool
started without metrics and on one started with `fleet worker --metrics-port` (its
worker processes count and time every invocation in prometheus_client's multiprocess
mode; the producer gets the `Metrics` extension too, so it stamps the publish time
and times its publishes). The order flips every repetition (off/on, on/off), so a
trend in the machine's load does not favour one side; the overhead is taken per pair.

Contract: records `W1 throughput, metrics off`, `W1 throughput, metrics on` and
`overhead, metrics` (percent, per repetition), and the CPU per task of the worker
pool (its process tree, from /proc) and of the producer, off and on, with the worker
CPU overhead in percent; and `worker|producer hooks CPU per invocation, metrics`: the
CPU the extension's hooks take per invocation, timed alone (`hook_cost`), which a
loaded machine does not blur the way it blurs the end-to-end ratios. Results are
checked: the values, and the pool's `/metrics` must count every invocation it ran. A
fresh pool per measurement (each with a fresh multiprocess directory). Speed is never
asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import ModuleType

from bench.measure import CpuMeter, Plan, Recorder
from bench.procs import Pool, fleet_pool
from fleet.extensions import Dispatcher
from fleet.invocation import Group
from fleet.testing._procs import free_port

TIMEOUT = 300.0
APP = "bench.tasks:app"


def _throughput(tasks: ModuleType, n: int, pool: Pool) -> tuple[float, float, float]:
    """(tasks/s, worker pool CPU us/task, producer CPU us/task) of one W1 run."""
    with CpuMeter([pool.pid]) as cpu:
        start = time.perf_counter()
        values = Group([tasks.noop(i) for i in range(n)]).results(TIMEOUT)
        took = time.perf_counter() - start
    assert values == list(range(n)), "W1 returned wrong values"
    return n / took, 1e6 * cpu.pool_seconds / n, 1e6 * cpu.producer_seconds / n


def _started(port: int, task: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fleet_invocations_started_total" and sample.labels["task"] == task:
                total += sample.value
    return total


def _measure(
    tasks: ModuleType, plan: Plan, env: dict[str, str], log_path: Path, metrics: bool
) -> tuple[float, float, float]:
    from bench.workloads import wait_consumers
    from fleet.monitor.metrics import Metrics

    app = tasks.app
    plain = app.dispatcher
    pool: Pool = fleet_pool(plan.processes, plan.threads, env, log_path, APP)
    port = 0
    if metrics:
        port = free_port()
        pool.argv += ["--metrics-port", str(port)]
        pool.env["FLEET__METRICS_HOST"] = "127.0.0.1"
        extension = Metrics()
        extension.bind(app)
        app.dispatcher = Dispatcher([*plain.extensions, extension])
    try:
        with pool:
            wait_consumers(tasks, pool, plan.processes)
            Group([tasks.noop(i) for i in range(plan.w1_warmup)]).results(TIMEOUT)
            measured = _throughput(tasks, plan.w1_tasks, pool)
            if metrics:  # the workers write what they counted every half second
                ran = plan.w1_warmup + plan.w1_tasks
                deadline = time.monotonic() + 30
                while (counted := _started(port, tasks.noop.name)) != ran:
                    assert time.monotonic() < deadline, f"/metrics: {counted} starts, {ran} runs"
                    time.sleep(0.1)
    finally:
        app.dispatcher = plain
    return measured


HOOK_CALLS = 20000


def hook_cost(calls: int = HOOK_CALLS) -> dict[str, float]:
    """CPU microseconds the Metrics extension's hooks take per invocation in
    prometheus_client's multiprocess mode, best of five rounds, the flusher's writes
    included (here on the calling thread): `worker` as a worker
    process calls them (claim and outcome through `after_change`, the run through
    `around_call` around a no-op), `producer` the producer's `around_publish` around a
    no-op. Run in a fresh interpreter (`python -m bench.metrics_load`): the mode is
    chosen when prometheus_client is first imported."""
    from fleet import Fleet
    from fleet.extensions import Applied, AppliedChange, Call, Publish
    from fleet.monitor.metrics import PUBLISHED, Metrics
    from fleet.status import Status

    app = Fleet(broker_url="memory://hooks", state_url="memory://hooks")
    task = app.task(name="bench.noop")(lambda x: x)
    metrics = Metrics()
    metrics.bind(app)
    claimed = Applied((AppliedChange("i", task.name, None, Status.RUNNING),))
    done = Applied((AppliedChange("i", task.name, Status.RUNNING, Status.SUCCESS),))
    stamp = {PUBLISHED: f"{time.time():.6f}"}
    worker = producer = float("inf")
    for _ in range(5):
        began = time.process_time()
        for _ in range(calls):
            metrics.after_change(claimed)
            metrics.around_call(Call("i", task.name, 1, (1,), {}, stamp), lambda: None)
            metrics.after_change(done)
        metrics.flush()  # the flusher thread's share, counted here
        worker = min(worker, (time.process_time() - began) / calls * 1e6)
        began = time.process_time()
        for _ in range(calls):
            metrics.around_publish(Publish(task.name, ("i",), "default"), lambda: None)
        metrics.flush()
        producer = min(producer, (time.process_time() - began) / calls * 1e6)
    return {"worker": worker, "producer": producer}


def _hook_cost_subprocess() -> dict[str, float]:
    folder = tempfile.mkdtemp(prefix="fleet-bench-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.metrics_load"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    found: dict[str, float] = json.loads(done.stdout)
    return found


def run(tasks: ModuleType, plan: Plan, rec: Recorder, log_path: Path, env: dict[str, str]) -> None:
    for rep in range(plan.reps):
        order = (False, True) if rep % 2 == 0 else (True, False)
        runs = {on: _measure(tasks, plan, env, log_path, on) for on in order}
        (off_rate, off_cpu, off_me), (on_rate, on_cpu, on_me) = runs[False], runs[True]
        rec.add("W1 throughput, metrics off", "tasks/s", off_rate, "higher")
        rec.add("W1 throughput, metrics on", "tasks/s", on_rate, "higher")
        rec.add("overhead, metrics", "%", 100 * (1 - on_rate / off_rate))
        rec.add("worker CPU per task, metrics off", "us", off_cpu)
        rec.add("worker CPU per task, metrics on", "us", on_cpu)
        rec.add("worker CPU overhead, metrics", "%", 100 * (on_cpu / off_cpu - 1))
        rec.add("producer CPU per task, metrics off", "us", off_me)
        rec.add("producer CPU per task, metrics on", "us", on_me)
    cost = _hook_cost_subprocess()
    rec.add("worker hooks CPU per invocation, metrics", "us", cost["worker"])
    rec.add("producer hooks CPU per invocation, metrics", "us", cost["producer"])
    rec.note(
        "W1 alternating a pool without metrics and one with `--metrics-port` (a fresh "
        "pool each; order flipped every repetition); the producer has the Metrics "
        "extension in the 'on' runs"
    )


if __name__ == "__main__":
    print(json.dumps(hook_cost()))
