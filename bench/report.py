"""The report: results tables, targets with ratios, the README section.

Job: turn the samples of a run into markdown: `bench/results/<YYYY-MM-DD>.md` (machine,
plan, every table, notes, the output of the broker and MongoDB round-trip scripts) and
the latest tables in README.md between the markers `<!-- bench:start -->` and
`<!-- bench:end -->` under `## Benchmarks`.

Contract: a cell is `median (min-max)` over the repetitions (the median alone for one
repetition). Targets are judged on medians from this run only; a target whose inputs
were not measured says why instead of passing or failing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.configs import SYSTEMS
from bench.measure import THREADED, Plan, Recorder, Sample

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
LABELS = {
    "embedded": "fleet embedded (SQLite)",
    "rabbitmq-sqlite": "fleet RabbitMQ + SQLite",
    "rabbitmq-classic": "fleet RabbitMQ (classic queue) + SQLite",
    "rabbitmq-wait": "fleet RabbitMQ, confirm awaited",
    "rabbitmq-mongo": "fleet RabbitMQ + MongoDB",
    "pika-quorum": "raw pika (quorum)",
    "pika-classic": "raw pika (classic)",
    "dramatiq": "Dramatiq (confirms)",
    "dramatiq-defaults": "Dramatiq defaults",
    "celery": "Celery defaults",
    "celery-reliable": "Celery acks_late",
}
ROWS = [
    ("W1", "throughput", "W1 throughput, one call per task"),
    ("W1", "submit rate", "W1 submit rate alone"),
    ("W1", THREADED, "W1 throughput, 8 producer threads"),
    ("W1", "worker CPU per task", "W1 CPU per task: worker pool"),
    ("W1", "producer CPU per task", "W1 CPU per task: producer (all threads)"),
    ("W1", "RabbitMQ CPU per task", "W1 CPU per task: RabbitMQ node"),
    ("W1", "batch throughput", "W1 throughput, one `parallelize` batch"),
    ("W1", "batch submit rate", "W1 batch submit rate alone"),
    ("W2", "p50", "W2 round trip p50"),
    ("W2", "p99", "W2 round trip p99"),
    ("W3", "wall", "W3 I/O fan-out wall time"),
    ("W3", "vs ideal", "W3 wall time / ideal"),
    ("W4", "wall", "W4 fib recursive fan-out wall time"),
    ("W4", "invocations", "W4 invocations per run"),
    ("idle", "CPU", "Idle CPU of the worker pool"),
    ("triggers", "W1 throughput, no triggers", "W1 throughput, no triggers defined"),
    ("triggers", "W1 throughput, 100 triggers", "W1 throughput, 100 unrelated triggers"),
    ("triggers", "overhead, 100 triggers", "W1 slowdown with 100 unrelated triggers"),
    ("triggers", "cron delay p50", "Cron tick to triggered run, p50"),
    ("triggers", "cron delay p99", "Cron tick to triggered run, p99"),
    ("signing", "W1 throughput, unsigned", "W1 throughput, messages unsigned"),
    ("signing", "W1 throughput, signed", "W1 throughput, messages signed (HMAC-SHA256)"),
    ("signing", "overhead, signed", "W1 slowdown with signed messages"),
    ("signing", "sign + check per message", "Signing: sign + check CPU per message"),
    ("stale", "throughput", "Batches of 1,000 waited one by one: throughput"),
    ("stale", "stale copies left", "Stale copies left in the queue after the run"),
    ("stale", "drain time", "Time for the stale copies to be dropped"),
    ("stale", "backlog after", "Backlog figure once all finished (fleet.backlog)"),
    ("workflows", "per-step overhead", "Workflow per-step overhead vs plain tasks"),
    ("workflows", "replay 1000 steps", "Workflow replay, 1,000 recorded steps"),
    ("workflows", "replay engine 1000 steps", "Workflow replay engine alone, 1,000 steps"),
    ("metrics", "W1 throughput, metrics off", "W1 throughput, metrics off"),
    ("metrics", "W1 throughput, metrics on", "W1 throughput, `--metrics-port` on"),
    ("metrics", "overhead, metrics", "W1 slowdown with Prometheus metrics"),
    ("metrics", "worker CPU per task, metrics off", "W1 worker CPU per task, metrics off"),
    ("metrics", "worker CPU per task, metrics on", "W1 worker CPU per task, metrics on"),
    ("metrics", "worker CPU overhead, metrics", "W1 worker CPU per task added by metrics"),
    ("metrics", "producer CPU per task, metrics off", "W1 producer CPU per task, metrics off"),
    ("metrics", "producer CPU per task, metrics on", "W1 producer CPU per task, metrics on"),
    ("metrics", "worker hooks CPU per invocation, metrics", "Metrics hooks alone: worker CPU"),
    ("metrics", "producer hooks CPU per invocation, metrics", "Metrics hooks alone: producer CPU"),
]


@dataclass
class Target:
    what: str
    measured: str
    goal: str
    status: str


class Results:
    """Every recorder of a run, indexed for the tables."""

    def __init__(self, recorders: Iterable[Recorder]) -> None:
        self.recorders = list(recorders)
        self.samples: dict[tuple[str, str, str], Sample] = {}
        for rec in self.recorders:
            for sample in rec.samples.values():
                self.samples[(rec.system, rec.workload, sample.metric)] = sample

    def get(self, system: str, workload: str, metric: str) -> Sample | None:
        return self.samples.get((system, workload, metric))

    def systems(self) -> list[str]:
        present = {rec.system for rec in self.recorders}
        return [s for s in LABELS if s in present]


def fmt(value: float, unit: str) -> str:
    if unit in ("tasks/s", "us"):
        return f"{value:,.0f}"
    if unit in ("per run", "count"):
        return f"{value:,.0f}"
    return f"{value:.2f}"


def cell(sample: Sample | None) -> str:
    if sample is None or not sample.values:
        return "-"
    if len(sample.values) == 1:
        return fmt(sample.median, sample.unit)
    return (
        f"{fmt(sample.median, sample.unit)} "
        f"({fmt(sample.low, sample.unit)}-{fmt(sample.high, sample.unit)})"
    )


def results_table(results: Results) -> str:
    systems = [s for s in results.systems() if s != "rabbitmq-mongo"]
    head = "| workload | unit | " + " | ".join(LABELS[s] for s in systems) + " |"
    lines = [head, "|---|---|" + "---|" * len(systems)]
    for workload, metric, label in ROWS:
        samples = [results.get(s, workload, metric) for s in systems]
        present = [s for s in samples if s is not None]
        if not present:
            continue
        cells = " | ".join(cell(s) for s in samples)
        lines.append(f"| {label} | {present[0].unit} | {cells} |")
    return "\n".join(lines)


def roundtrip_table(results: Results) -> str:
    rows = []
    for system in results.systems():
        for sample in results.samples.values():
            if sample.system == system and sample.workload == "rt":
                rows.append(f"| {LABELS[system]} | {sample.metric} | {cell(sample)} |")
    if not rows:
        return ""
    head = ["| configuration | calls: side, store | SQLite statements per invocation |"]
    return "\n".join([*head, "|---|---|---|", *rows])


def _ratio_target(
    results: Results,
    what: str,
    mine: tuple[str, str, str],
    theirs: tuple[str, str, str],
    bound: float,
    at_least: bool,
) -> Target:
    a, b = results.get(*mine), results.get(*theirs)
    goal = f"{'>=' if at_least else '<='} {bound:g}x"
    if a is None or b is None:
        missing = LABELS.get(mine[0], mine[0]) if a is None else LABELS.get(theirs[0], theirs[0])
        return Target(what, "-", goal, f"not measured ({missing} has no result)")
    ratio = a.median / b.median
    ok = ratio >= bound if at_least else ratio <= bound
    measured = f"{fmt(a.median, a.unit)} vs {fmt(b.median, b.unit)} {a.unit} = {ratio:.2f}x"
    return Target(what, measured, goal, "met" if ok else "MISSED")


def _value_target(
    results: Results, what: str, key: tuple[str, str, str], bound: float, at_least: bool
) -> Target:
    sample = results.get(*key)
    goal = f"{'>=' if at_least else '<='} {bound:g}"
    if sample is None:
        return Target(what, "-", goal, "not measured")
    ok = sample.median >= bound if at_least else sample.median <= bound
    if not at_least and what.startswith("Idle"):
        ok = sample.median < bound
        goal = f"< {bound:g}"
    return Target(
        what, f"{fmt(sample.median, sample.unit)} {sample.unit}", goal, "met" if ok else "MISSED"
    )


def targets(results: Results, fleet_systems: Iterable[str], plan: Plan) -> list[Target]:
    """The issue's targets, judged on the default configurations; rows marked 'info'
    repeat a comparison on a classic queue (Dramatiq's queue type) and judge nothing."""
    found = []
    for mine, theirs, pika, info in (
        ("rabbitmq-sqlite", "dramatiq", "pika-quorum", ""),
        ("rabbitmq-classic", "dramatiq", "pika-classic", "info, classic queues: "),
    ):
        label = "RabbitMQ" if not info else f"({info.rstrip(': ')}) RabbitMQ"
        found += [
            _ratio_target(
                results,
                f"{label} W1 vs Dramatiq defaults",
                (mine, "W1", "throughput"),
                ("dramatiq-defaults", "W1", "throughput"),
                1.0,
                True,
            ),
            _ratio_target(
                results,
                f"{label} W1, 8 producer threads, vs Dramatiq defaults",
                (mine, "W1", THREADED),
                ("dramatiq-defaults", "W1", THREADED),
                1.0,
                True,
            ),
            _ratio_target(
                results,
                f"{label} W2 p50 vs Dramatiq defaults",
                (mine, "W2", "p50"),
                ("dramatiq-defaults", "W2", "p50"),
                1.0,
                False,
            ),
            _ratio_target(
                results,
                f"{label} W1 vs Dramatiq (confirms)",
                (mine, "W1", "throughput"),
                (theirs, "W1", "throughput"),
                1.0,
                True,
            ),
            _ratio_target(
                results,
                f"{label} W1 vs {LABELS[pika]}",
                (mine, "W1", "throughput"),
                (pika, "W1", "throughput"),
                0.5,
                True,
            ),
            _ratio_target(
                results,
                f"{label} W2 p50 vs {LABELS[pika]}",
                (mine, "W2", "p50"),
                (pika, "W2", "p50"),
                1.5,
                False,
            ),
        ]
        if info:
            for target in found[-6:]:
                target.status = f"info ({target.status})"
    for system in fleet_systems:
        if "W3" not in SYSTEMS[system].workloads:
            continue
        label = LABELS[system]
        found.append(
            _value_target(results, f"{label}: W3 / ideal", (system, "W3", "vs ideal"), 1.05, False)
        )
        fib = results.get(system, "W4", "wall")
        done = "-" if fib is None else f"{len(fib.values)} of {plan.reps} runs completed"
        status = (
            "not measured" if fib is None else "met" if len(fib.values) == plan.reps else "MISSED"
        )
        found.append(Target(f"{label}: W4 fib({plan.w4_n}) completes", done, "completes", status))
        found.append(_value_target(results, f"Idle, {label}", (system, "idle", "CPU"), 1.0, False))
    found += [
        _value_target(
            results,
            "RabbitMQ worker CPU per task (us)",
            ("rabbitmq-sqlite", "W1", "worker CPU per task"),
            250,
            False,
        ),
        _value_target(
            results, "Embedded W1 throughput", ("embedded", "W1", "throughput"), 5500, True
        ),
        _value_target(results, "Embedded W2 p50 (ms)", ("embedded", "W2", "p50"), 5.0, False),
        _value_target(
            results,
            "Embedded W1 slowdown with 100 triggers (%)",
            ("embedded", "triggers", "overhead, 100 triggers"),
            5.0,
            False,
        ),
        _value_target(
            results,
            "Embedded W1 slowdown with Prometheus metrics (%)",
            ("embedded", "metrics", "overhead, metrics"),
            5.0,
            False,
        ),
        _value_target(
            results,
            "Embedded cron tick to run p50 (ms)",
            ("embedded", "triggers", "cron delay p50"),
            1000.0,
            False,
        ),
        _value_target(
            results,
            "RabbitMQ + SQLite stale copies left after the `stale` run",
            ("rabbitmq-sqlite", "stale", "stale copies left"),
            0.0,
            False,
        ),
        _value_target(
            results,
            "Embedded workflow per-step overhead (x plain tasks)",
            ("embedded", "workflows", "per-step overhead"),
            1.3,
            False,
        ),
        _value_target(
            results,
            "Embedded replay of 1,000 recorded steps (s)",
            ("embedded", "workflows", "replay 1000 steps"),
            0.5,
            False,
        ),
    ]
    return found


def targets_table(found: list[Target]) -> str:
    lines = ["| target | measured (medians) | goal | status |", "|---|---|---|---|"]
    lines += [f"| {t.what} | {t.measured} | {t.goal} | {t.status} |" for t in found]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> None:
    """Replace the text between the markers (or add a `## Benchmarks` section)."""
    text = readme.read_text()
    block = f"{START}\n{section.strip()}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        new = f"## Benchmarks\n\n{block}\n\n"
        marker = "## Development"
        text = text.replace(marker, new + marker, 1) if marker in text else text + "\n" + new
    readme.write_text(text)


METHOD = """\
- Every workload runs on this machine in this run. Worker pools are separate OS
  processes ({processes} processes x {threads} threads, {slots} slots) started per
  workload with a fresh SQLite file and a fresh queue: fleet with `fleet worker`,
  Dramatiq with its `dramatiq` CLI, raw pika as {processes} consumer processes with a
  prefetch of {threads}. The producer is the harness process, one thread.
- A warm-up precedes the timed part; then {reps} repetition(s); cells are
  median (min-max). The RabbitMQ systems' W1 and W2 run interleaved, one repetition of
  each system in turn (a fresh pool each time), so that load coming and going on the
  machine does not favour one of them; ratios are taken between medians.
- W1: {w1} tasks `noop(x) -> x`, from the first submit until every result is back in
  the producer; "submit rate" is the submitting loop alone. fleet also runs the same
  tasks as one `parallelize` batch. W2: {w2} sequential calls, each blocking for its
  result. W3: {w3} tasks sleeping {sleep:g} s; ideal = {ideal:g} s. W4: `fib({fib})`,
  every call a task that waits on two child tasks. Idle: utime+stime of the pool's whole
  process tree (supervisor and workers) over {idle:g} s, as % of one core. Triggers
  (embedded only, `bench/trigger_load.py`): W1 with no triggers and with 100 triggers
  watching tasks that never run, alternating; the delay from a cron tick (a trigger
  firing every second) to the start of the invocation it started. Metrics (embedded
  only, `bench/metrics_load.py`): W1 on a pool without metrics and on one with
  `fleet worker --metrics-port` (producer with the Metrics extension), alternating.
  Signing (`bench/signing_load.py`, embedded and RabbitMQ + SQLite): W1 with messages
  unsigned and signed (HMAC-SHA256, two keys listed), a pool per side, sides alternated;
  and the CPU to sign and check one W1 message, timed in the harness process.
- CPU per task (W1): utime+stime (/proc, 10 ms ticks) over the timed section, divided
  by the tasks: of the worker pool's process tree, of the producer process (every
  thread, e.g. the one receiving results), and of the RabbitMQ node's processes. On a
  machine with few cores these decide throughput: producer, workers and broker share
  them.
- Raw pika: persistent messages, publisher confirms, manual acks after a reply to
  `reply_to` (W1: one confirmed publish per task; W2: a direct reply-to round trip);
  run on a quorum queue (the type fleet declares by default) and on a classic one.
  Targets compare with the quorum run; fleet also runs W1 and W2 on a classic queue
  ("info" rows), the type Dramatiq declares.
- Dramatiq: RabbitMQ broker twice, with `confirm_delivery=True` (the guarantee fleet
  gives) and with its defaults (no confirms, as users run it), and the Results
  middleware. Its shipped result backends need Redis or
  Memcached, which this machine has not, so results travel over the same RabbitMQ
  (`bench.dramatiq_tasks.AMQPResults`: one extra non-confirmed publish per task, pushed
  to the waiting producer). Dramatiq declares classic queues. It runs no W4: a
  blocking wait inside an actor deadlocks a fixed pool.
- Celery: `celery worker` with a prefork pool of {processes} children, results over
  its `rpc://` backend (pushed to the caller's reply queue on the same RabbitMQ), twice:
  with its defaults (ack on receipt, no publisher confirms) and with its documented
  reliable setting (`task_acks_late` + `task_reject_on_worker_lost`).
- W1 with producer threads: the same {w1} tasks split over 8 threads, each calling its
  share one call at a time and then waiting for its own results.
- State round trips: SQLite statements (`statements` counters of the state store and
  the SQLite broker; BEGIN/COMMIT not counted) per invocation, for {single} single calls
  and a batch of {batch}. The producer side is read in the harness. The worker side is
  read inside the worker process by the `counters` task on a pool of ONE process; two
  probes in a row measure the probe's own cost, which is subtracted. Time-driven
  statements (heartbeats, expired-delivery sweeps) that fall into the window are
  included.
"""


def render(
    *,
    title_date: str,
    machine: dict[str, str],
    plan: Plan,
    command: str,
    duration: float,
    results: Results,
    found: list[Target],
    statuses: list[str],
    appendices: dict[str, str],
) -> str:
    parts = [f"# fleet benchmarks, {title_date}", ""]
    parts += [f"- {k}: {v}" for k, v in machine.items()]
    parts += [f"- command: `{command}` ({duration:.0f} s)", ""]
    parts += ["## Results", "", results_table(results), ""]
    parts += ["## Targets", "", targets_table(found), ""]
    rt = roundtrip_table(results)
    if rt:
        parts += ["## State round trips", "", rt, ""]
    if statuses:
        parts += ["## Not measured in this run", ""] + [f"- {s}" for s in statuses] + [""]
    notes = [
        f"- {LABELS.get(r.system, r.system)}, {r.workload}: {n}"
        for r in results.recorders
        for n in r.notes
    ]
    if notes:
        parts += ["## Notes", "", *notes, ""]
    parts += [
        "## Method",
        "",
        METHOD.format(
            processes=plan.processes,
            threads=plan.threads,
            slots=plan.slots,
            reps=plan.reps,
            w1=plan.w1_tasks,
            w2=plan.w2_calls,
            w3=plan.w3_tasks,
            sleep=plan.w3_sleep,
            ideal=plan.w3_ideal,
            fib=plan.w4_n,
            idle=plan.idle_seconds,
            single=plan.rt_single,
            batch=plan.rt_batch,
        ),
    ]
    for title, text in appendices.items():
        parts += [f"## {title}", "", "```", text.rstrip(), "```", ""]
    return "\n".join(parts)


def readme_section(
    title_date: str, machine: dict[str, str], results: Results, found: list[Target], path: str
) -> str:
    facts = ", ".join(f"{k} {v}" for k, v in machine.items())
    return "\n".join(
        [
            f"Latest `make bench` ({title_date}; full report with method and notes: "
            f"[{path}]({path})). {facts}.",
            "",
            results_table(results),
            "",
            targets_table(found),
        ]
    )
