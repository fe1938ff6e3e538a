"""The Celery baselines on the run's RabbitMQ: its defaults, and its reliable setting.

Job: measure W1 and W2 (as fleet's workloads measure them) for Celery, workers started
with its `celery worker` CLI (prefork pool, `-c` = the plan's processes, Celery's
default of one child per core here), the app of `bench.celery_tasks` configured by
the environment this module builds (`celery_env`).

Contract: records into the `Recorder`s it is given; the queue is fresh per run and
deleted at the end; the worker pool is stopped by PID. Results come back over Celery's
`rpc://` backend, which binds results to the thread that sent the task: every thread
waits only for its own calls.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from bench.baselines import TIMEOUT, NewRecorder, _delete_queues, wait_consumers
from bench.configs import fresh_name
from bench.measure import (
    THREADED,
    CpuMeter,
    Plan,
    Recorder,
    broker_pids,
    percentile,
    threaded_rate,
)
from bench.procs import Pool, python_module


def celery_env(url: str, reliable: bool) -> dict[str, str]:
    return {
        "BENCH_AMQP_URL": url,
        "BENCH_CELERY_QUEUE": fresh_name("bench-celery"),
        "BENCH_CELERY_RELIABLE": "1" if reliable else "0",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
        ),
    }


def celery_argv(module: str, queue: str, processes: int) -> list[str]:
    """`celery -A module worker` with a prefork pool of `processes` children."""
    return python_module(
        "celery",
        "-A",
        module,
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(processes),
        "--queues",
        queue,
        "--loglevel",
        "WARNING",
    )


def celery_run(
    url: str,
    plan: Plan,
    recorder: NewRecorder,
    workloads: set[str],
    logs: Path,
    env: dict[str, str],
) -> None:
    """`env` carries BENCH_* (see bench.celery_tasks) and is already in os.environ."""
    import bench.celery_tasks as ct

    name = "celery-reliable" if ct.RELIABLE else "celery"
    argv = celery_argv("bench.celery_tasks", ct.QUEUE, plan.processes)
    pool = Pool(argv, env, logs / f"{name}.log")
    try:
        with pool:
            wait_consumers(url, ct.QUEUE, 1, pool)  # one consumer: the main process
            for workload, run in CELERY.items():
                if workload in workloads:
                    run(ct, plan, recorder(workload), pool)
    finally:
        _delete_queues(url, [ct.QUEUE])


def _calls(ct: ModuleType, part: range) -> list[int]:
    """Send one call per item, then wait for every result (this thread's own)."""
    sent = [ct.noop.delay(i) for i in part]
    return [r.get(timeout=TIMEOUT) for r in sent]


def _celery_w1(ct: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    _calls(ct, range(plan.w1_warmup))
    n = plan.w1_tasks
    rec.note(
        "reliable: task_acks_late + task_reject_on_worker_lost"
        if ct.RELIABLE
        else "Celery's defaults (ack on receipt, no publisher confirms)"
    )
    for _ in range(plan.reps):
        with CpuMeter([pool.pid], broker_pids()) as cpu:
            start = time.perf_counter()
            sent = [ct.noop.delay(i) for i in range(n)]
            submitted = time.perf_counter()
            values = [r.get(timeout=TIMEOUT) for r in sent]
            done = time.perf_counter()
        assert values == list(range(n)), "Celery W1: wrong values"
        rec.add("throughput", "tasks/s", n / (done - start), "higher")
        rec.add("submit rate", "tasks/s", n / (submitted - start), "higher")
        cpu.record(rec, n)
        rate = threaded_rate(plan.producer_threads, n, lambda part: _calls(ct, part))
        rec.add(THREADED, "tasks/s", rate, "higher")


def _celery_w2(ct: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    for i in range(plan.w2_warmup):
        ct.noop.delay(i).get(timeout=TIMEOUT)
    for _ in range(plan.reps):
        latencies = []
        for i in range(plan.w2_calls):
            start = time.perf_counter()
            value = ct.noop.delay(i).get(timeout=TIMEOUT)
            latencies.append(time.perf_counter() - start)
            assert value == i, "Celery W2: wrong value"
        rec.add("p50", "ms", 1000 * percentile(latencies, 50))
        rec.add("p99", "ms", 1000 * percentile(latencies, 99))


CELERY: dict[str, Callable[[ModuleType, Plan, Recorder, Pool], None]] = {
    "W1": _celery_w1,
    "W2": _celery_w2,
}
