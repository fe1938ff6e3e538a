"""Baselines on the run's RabbitMQ: a raw pika loop, and Dramatiq (Celery: bench.celery_run).

Job: measure what the fleet workloads measure, on the same RabbitMQ node, with the same
number of worker processes and slots, for systems fleet is compared with.

Raw pika (the floor of any task system on RabbitMQ): W1 publishes `n` persistent
messages one by one with publisher confirms, and ends when every consumer reply is in
(consumers ack manually after replying, prefetch = twice the threads per process, as
fleet's default); W2 is a direct reply-to round trip (publish with a confirm, block for the
reply). It runs once on a quorum queue (the queue type fleet declares by default) and
once on a classic queue. Dramatiq: its RabbitMQ broker (twice: with publisher confirms,
and with its defaults, without them) and its Results middleware over
`bench.dramatiq_tasks.AMQPResults`, workers started with the `dramatiq` CLI; W1 and W2
as for fleet (one `send` per task, then every result), W3, and the idle CPU of its pool.

Contract: each function records into the `Recorder`s it is given; queues are fresh
per run and deleted at the end; worker pools are stopped by PID.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pika

from bench.configs import fresh_name
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
from bench.procs import Pool, python_module

TIMEOUT = 300.0
NewRecorder = Callable[[str], Recorder]
"""Returns the recorder of one workload (by name)."""
REPLY_TO = "amq.rabbitmq.reply-to"


def _connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def wait_consumers(url: str, queue: str, count: int, pool: Pool, timeout: float = 60.0) -> None:
    """Block until `queue` exists and has `count` consumers (or the pool died)."""
    deadline = time.monotonic() + timeout
    connection = _connect(url)
    try:
        while True:
            pool.check()
            channel = connection.channel()
            try:
                found = channel.queue_declare(queue, passive=True).method.consumer_count
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                found = 0  # not declared yet
            if found >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue}: fewer than {count} consumers after {timeout}s")
            time.sleep(0.05)
    finally:
        connection.close()


# -- raw pika ------------------------------------------------------------------------


class _Replies:
    """Counts direct reply-to replies on the publishing channel."""

    def __init__(self, connection: pika.BlockingConnection, channel: Any) -> None:
        self.connection = connection
        self.count = 0
        channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)

    def _on_reply(self, *_: object) -> None:
        self.count += 1

    def wait(self, total: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.count < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw pika: {self.count} of {total} replies")
            self.connection.process_data_events(time_limit=1)


def pika_run(
    url: str, queue_type: str, plan: Plan, recorder: NewRecorder, workloads: set[str], logs: Path
) -> None:
    queue = fresh_name(f"bench-pika-{queue_type}")
    connection = _connect(url)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": queue_type})
    channel.confirm_delivery()
    replies = _Replies(connection, channel)
    persistent = pika.BasicProperties(delivery_mode=2, reply_to=REPLY_TO)
    pools = [
        Pool(
            python_module("bench.pika_worker", url, queue, str(2 * plan.threads)),
            {},
            logs / f"pika-{queue_type}-{i}.log",
        )
        for i in range(plan.processes)
    ]

    def publish(i: int) -> None:
        channel.basic_publish("", queue, str(i).encode(), persistent, mandatory=True)

    try:
        for pool in pools:
            pool.start()
        wait_consumers(url, queue, plan.processes, pools[0])
        note = f"{queue_type} queue, persistent messages, publisher confirms, manual acks"
        if "W1" in workloads:
            rec = recorder("W1")
            rec.note(note)
            for i in range(plan.w1_warmup):
                publish(i)
            replies.wait(replies.count + plan.w1_warmup)
            for _ in range(plan.reps):
                base = replies.count
                with CpuMeter([p.pid for p in pools], broker_pids()) as cpu:
                    start = time.perf_counter()
                    for i in range(plan.w1_tasks):
                        publish(i)
                    submitted = time.perf_counter()
                    replies.wait(base + plan.w1_tasks)
                    done = time.perf_counter()
                rec.add("throughput", "tasks/s", plan.w1_tasks / (done - start), "higher")
                rec.add("submit rate", "tasks/s", plan.w1_tasks / (submitted - start), "higher")
                cpu.record(rec, plan.w1_tasks)
        if "W2" in workloads:
            rec = recorder("W2")
            rec.note(note + ", direct reply-to")
            for i in range(plan.w2_warmup):
                publish(i)
                replies.wait(replies.count + 1)
            for _ in range(plan.reps):
                latencies = []
                for i in range(plan.w2_calls):
                    start = time.perf_counter()
                    publish(i)
                    replies.wait(replies.count + 1)
                    latencies.append(time.perf_counter() - start)
                rec.add("p50", "ms", 1000 * percentile(latencies, 50))
                rec.add("p99", "ms", 1000 * percentile(latencies, 99))
    finally:
        for pool in pools:
            pool.stop()
        channel.queue_delete(queue)
        connection.close()


# -- Dramatiq ------------------------------------------------------------------------


def dramatiq_run(
    url: str,
    plan: Plan,
    recorder: NewRecorder,
    workloads: set[str],
    logs: Path,
    env: dict[str, str],
) -> None:
    """`env` carries BENCH_* (see bench.dramatiq_tasks) and is already in os.environ."""
    import bench.dramatiq_tasks as dt

    argv = python_module(
        "dramatiq",
        "bench.dramatiq_tasks",
        "--processes",
        str(plan.processes),
        "--threads",
        str(plan.threads),
        "--queues",
        dt.QUEUE,
    )
    dt.results.start_reader()
    pool = Pool(argv, env, logs / "dramatiq.log")
    try:
        with pool:
            wait_consumers(url, dt.QUEUE, plan.processes, pool)
            for workload, run in DRAMATIQ.items():
                if workload in workloads:
                    run(dt, plan, recorder(workload), pool)
    finally:
        dt.results.stop_reader()
        dt.broker.close()
        _delete_queues(url, [dt.QUEUE, f"{dt.QUEUE}.DQ", f"{dt.QUEUE}.XQ"])


MS = int(TIMEOUT * 1000)
"""Dramatiq's result timeouts are in milliseconds."""


def _dramatiq_w1(dt: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    for m in [dt.noop.send(i) for i in range(plan.w1_warmup)]:
        m.get_result(block=True, timeout=MS)
    n = plan.w1_tasks
    for _ in range(plan.reps):
        with CpuMeter([pool.pid], broker_pids()) as cpu:
            start = time.perf_counter()
            messages = [dt.noop.send(i) for i in range(n)]
            submitted = time.perf_counter()
            values = [m.get_result(block=True, timeout=MS) for m in messages]
            done = time.perf_counter()
        assert values == list(range(n)), "Dramatiq W1: wrong values"
        rec.add("throughput", "tasks/s", n / (done - start), "higher")
        rec.add("submit rate", "tasks/s", n / (submitted - start), "higher")
        cpu.record(rec, n)
        rate = threaded_rate(
            plan.producer_threads,
            n,
            lambda part: [
                m.get_result(block=True, timeout=MS) for m in [dt.noop.send(i) for i in part]
            ],
        )
        rec.add(THREADED, "tasks/s", rate, "higher")


def _dramatiq_w2(dt: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    for i in range(plan.w2_warmup):
        dt.noop.send(i).get_result(block=True, timeout=MS)
    for _ in range(plan.reps):
        latencies = []
        for i in range(plan.w2_calls):
            start = time.perf_counter()
            value = dt.noop.send(i).get_result(block=True, timeout=MS)
            latencies.append(time.perf_counter() - start)
            assert value == i, "Dramatiq W2: wrong value"
        rec.add("p50", "ms", 1000 * percentile(latencies, 50))
        rec.add("p99", "ms", 1000 * percentile(latencies, 99))


def _dramatiq_w3(dt: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    for warm in [dt.sleeper.send(0.01) for _ in range(plan.slots)]:
        warm.get_result(block=True, timeout=MS)
    for _ in range(plan.reps):
        start = time.perf_counter()
        sent = [dt.sleeper.send(plan.w3_sleep) for _ in range(plan.w3_tasks)]
        for sleeping in sent:
            sleeping.get_result(block=True, timeout=MS)
        wall = time.perf_counter() - start
        rec.add("wall", "s", wall)
        rec.add("vs ideal", "x", wall / plan.w3_ideal)


def _dramatiq_idle(dt: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    time.sleep(plan.idle_settle)  # let the pool settle (not a wait for a condition)
    for _ in range(plan.reps):
        percent, processes = idle_cpu_percent([pool.pid], plan.idle_seconds)
        rec.add("CPU", "% of a core", percent)
    rec.note(f"measured over {plan.idle_seconds:g} s on {processes} processes")


DRAMATIQ: dict[str, Callable[[ModuleType, Plan, Recorder, Pool], None]] = {
    "W1": _dramatiq_w1,
    "W2": _dramatiq_w2,
    "W3": _dramatiq_w3,
    "idle": _dramatiq_idle,
}


def _delete_queues(url: str, queues: list[str]) -> None:
    connection = _connect(url)
    try:
        for queue in queues:
            channel = connection.channel()
            channel.queue_delete(queue)
            channel.close()
    finally:
        connection.close()


def dramatiq_env(url: str, confirm: bool) -> dict[str, str]:
    return {
        "BENCH_AMQP_URL": url,
        "BENCH_DRAMATIQ_CONFIRM": "1" if confirm else "0",
        "BENCH_DRAMATIQ_QUEUE": fresh_name("bench-dramatiq").replace("-", "_"),
        "BENCH_RESULTS_QUEUE": fresh_name("bench-dramatiq-results"),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
        ),
    }
