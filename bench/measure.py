"""Measuring: the plan of a run, samples and their summaries, CPU of a process tree.

Job: the small pieces every workload shares. Contract: a `Plan` fixes the sizes of one
run (full or `--quick`); a `Sample` is one metric of one system in one workload, with one
value per repetition, summarised as median, min and max; `tree_cpu_seconds` reads
utime + stime of a process and all its live descendants from /proc (Linux only), so the
CPU of a worker pool is measured without sampling it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleet.testing._procs import process_tree

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
THREADED = "throughput, producer threads"
"""W1's metric with `Plan.producer_threads` producer threads."""


@dataclass(frozen=True)
class Plan:
    """Sizes of one run; `quick()` is the smoke-test variant."""

    reps: int = 3
    processes: int = 2
    threads: int = 4
    w1_tasks: int = 2000
    w1_warmup: int = 200
    w2_calls: int = 200
    w2_warmup: int = 200
    """As many as W1's: every system's pools are past their first second when timed."""
    w3_tasks: int = 40
    w3_sleep: float = 0.25
    w4_n: int = 15
    w4_warmup_n: int = 8
    idle_seconds: float = 5.0
    idle_settle: float = 2.0
    rt_single: int = 20
    rt_batch: int = 100
    cron_ticks: int = 20
    stale_tasks: int = 100_000
    stale_batch: int = 1000
    producer_threads: int = 8
    """W1 is also run with this many producer threads, each calling its share."""
    wf_steps: int = 200

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            reps=1,
            w1_tasks=200,
            w1_warmup=20,
            w2_calls=30,
            w2_warmup=5,
            w3_tasks=16,
            w3_sleep=0.1,
            w4_n=8,
            w4_warmup_n=4,
            idle_seconds=1.0,
            idle_settle=0.5,
            rt_single=5,
            rt_batch=20,
            cron_ticks=3,
            stale_tasks=5000,
            wf_steps=50,
        )

    @property
    def slots(self) -> int:
        return self.processes * self.threads

    @property
    def w3_ideal(self) -> float:
        """Wall time of W3 with perfect scheduling: full waves of sleeps on every slot."""
        waves = -(-self.w3_tasks // self.slots)
        return waves * self.w3_sleep

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    """One metric of one system in one workload: a value per repetition."""

    system: str
    workload: str
    metric: str
    unit: str
    values: list[float] = field(default_factory=list)
    better: str = "lower"
    """'lower' or 'higher': which way is good (for the report's wording only)."""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        return cls(**data)


class Recorder:
    """Collects samples for one system and workload, one repetition at a time."""

    def __init__(self, system: str, workload: str) -> None:
        self.system = system
        self.workload = workload
        self.samples: dict[str, Sample] = {}
        self.notes: list[str] = []

    def add(self, metric: str, unit: str, value: float, better: str = "lower") -> None:
        sample = self.samples.get(metric)
        if sample is None:
            sample = self.samples[metric] = Sample(
                self.system, self.workload, metric, unit, better=better
            )
        sample.values.append(float(value))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "workload": self.workload,
            "samples": [s.to_json() for s in self.samples.values()],
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recorder:
        rec = cls(data["system"], data["workload"])
        for raw in data["samples"]:
            sample = Sample.from_json(raw)
            rec.samples[sample.metric] = sample
        rec.notes = list(data["notes"])
        return rec


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of at least one value."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def threaded_rate(threads: int, total: int, work: Callable[[range], list[Any]]) -> float:
    """Tasks per second of `total` tasks split over `threads` producer threads: each
    thread runs `work(its range)` (submit one call at a time, then wait for its own
    results, which `work` returns in order); a wrong or missing value raises."""
    import threading

    chunks = [range(total * i // threads, total * (i + 1) // threads) for i in range(threads)]
    got: list[list[Any] | BaseException] = [[] for _ in chunks]
    start_gate = threading.Barrier(threads + 1)

    def run(index: int) -> None:
        start_gate.wait()
        try:
            got[index] = work(chunks[index])
        except BaseException as exc:
            got[index] = exc

    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    start_gate.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    took = time.perf_counter() - start
    for chunk, values in zip(chunks, got, strict=True):
        if isinstance(values, BaseException):
            raise values
        assert values == list(chunk), "threaded W1 returned wrong values"
    return total / took


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu_ticks(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def tree_cpu_seconds(root: int) -> dict[tuple[int, int], float]:
    """CPU seconds used so far by `root` and each live descendant, keyed (pid, start)."""
    found: dict[tuple[int, int], float] = {}
    for ident in process_tree(root):
        ticks = _cpu_ticks(ident[0])
        if ticks is not None:
            found[ident] = ticks / CLOCK_TICKS
    return found


def idle_cpu_percent(roots: Iterable[int], seconds: float) -> tuple[float, int]:
    """% of one core that the process trees under `roots` use over `seconds`, and how
    many processes were measured (those alive at both ends)."""
    roots = list(roots)
    before: dict[tuple[int, int], float] = {}
    for root in roots:
        before.update(tree_cpu_seconds(root))
    start = time.monotonic()
    time.sleep(seconds)  # the measurement window itself, not a wait for a condition
    elapsed = time.monotonic() - start
    after: dict[tuple[int, int], float] = {}
    for root in roots:
        after.update(tree_cpu_seconds(root))
    common = before.keys() & after.keys()
    used = sum(after[k] - before[k] for k in common)
    return 100.0 * used / elapsed, len(common)


def _trees(roots: Iterable[int]) -> dict[tuple[int, int], float]:
    found: dict[tuple[int, int], float] = {}
    for root in roots:
        found.update(tree_cpu_seconds(root))
    return found


class CpuMeter:
    """CPU used per task during one timed section: by the worker pool (process trees
    under `pools`), by RabbitMQ (`broker`: its node's processes, may be empty) and by
    this producer process (all its threads)."""

    def __init__(self, pools: Iterable[int], broker: Iterable[int] = ()) -> None:
        self.pools = list(pools)
        self.broker = list(broker)

    def __enter__(self) -> CpuMeter:
        self._pools = _trees(self.pools)
        self._broker = _trees(self.broker)
        self._me = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        # This process's clock first: reading /proc below costs CPU of its own.
        self.producer_seconds = time.process_time() - self._me
        self.pool_seconds = _used(self._pools, _trees(self.pools))
        self.broker_seconds = _used(self._broker, _trees(self.broker))

    def record(self, rec: Recorder, tasks: int) -> None:
        """Add 'CPU per task' samples (microseconds) for the section just measured."""
        rec.add("worker CPU per task", "us", 1e6 * self.pool_seconds / tasks)
        rec.add("producer CPU per task", "us", 1e6 * self.producer_seconds / tasks)
        if self.broker:
            rec.add("RabbitMQ CPU per task", "us", 1e6 * self.broker_seconds / tasks)


def _used(before: dict[tuple[int, int], float], after: dict[tuple[int, int], float]) -> float:
    # Processes that started during the section count from zero; ended ones are lost.
    return sum(after[k] - before.get(k, 0.0) for k in after)


def broker_pids() -> list[int]:
    """PIDs of the run's RabbitMQ node (from `BENCH_RABBITMQ_PIDS`, set by the parent)."""
    raw = os.environ.get("BENCH_RABBITMQ_PIDS", "")
    return [int(p) for p in raw.split(",") if p.strip()]
