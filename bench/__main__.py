"""`python -m bench`: measure fleet against raw RabbitMQ and Dramatiq in one run.

Usage: `python -m bench [--quick] [--only W1,W2,W3,W4,idle,rt,triggers,stale,workflows,
metrics,signing,duplicates] [--stale-count N] [--configs embedded,rabbitmq-sqlite,
rabbitmq-mongo,pika,dramatiq] [--out DIR] [--keep]`

Job: run every selected (system, workload) in child processes (see `bench.run`) and
write the report to `<out>/<YYYY-MM-DD>.md` (`-quick.md` for quick runs), with the raw
samples beside it as JSON. A full run into the default folder (`bench/results`) also
refreshes the README's `## Benchmarks` section. Exit status 0 when every child run
measured what it should (targets missed do not fail the run: they are results).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

from bench import report
from bench.configs import ALL_WORKLOADS, SYSTEMS
from bench.extra_targets import extra_targets
from bench.machine import describe
from bench.measure import Plan
from bench.procs import REPO
from bench.run import Run, plan_jobs

DEFAULT_OUT = REPO / "bench" / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--only", default=",".join(ALL_WORKLOADS), help="workloads to run")
    parser.add_argument("--configs", default=",".join(SYSTEMS), help="systems to measure")
    parser.add_argument("--out", type=Path, default=None, help="folder for the report")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, dbs)")
    parser.add_argument(
        "--stale-count",
        type=int,
        default=None,
        help="invocations of the `stale` workload (default 100000; 5000 with --quick)",
    )
    args = parser.parse_args(argv)
    args.only = _choices(args.only, ALL_WORKLOADS, "--only")
    args.configs = _choices(args.configs, tuple(SYSTEMS), "--configs")
    return args


def _choices(value: str, known: tuple[str, ...], option: str) -> list[str]:
    lowered = {k.lower(): k for k in known}
    picked = []
    for item in (v.strip().lower() for v in value.split(",") if v.strip()):
        if item not in lowered:
            raise SystemExit(f"{option}: unknown {item!r}; known: {', '.join(known)}")
        picked.append(lowered[item])
    return picked


def _plan(args: argparse.Namespace) -> Plan:
    plan = Plan.quick() if args.quick else Plan()
    if args.stale_count is not None:
        plan = dataclasses.replace(plan, stale_tasks=args.stale_count)
    return plan


def _child_timeout(args: argparse.Namespace, plan: Plan) -> float:
    timeout = 180.0 if args.quick else 900.0
    if "stale" in args.only:  # one child runs all of it: 100,000 take minutes here
        timeout += plan.stale_tasks / 100
    if "duplicates" in args.only:  # bench/duplicates.py: 12 runs of 20 s or more
        timeout += 900
    return timeout


def main(argv: list[str]) -> int:
    args = parse(argv)
    began = time.monotonic()
    plan = _plan(args)
    run = Run(plan, args.only, args.quick, _child_timeout(args, plan))
    systems = []
    for name in SYSTEMS:
        system = SYSTEMS[name]
        missing = system.missing_backend() if system.kind == "fleet" else None
        if name not in args.configs:
            continue
        if missing:
            run.statuses.append(f"{report.LABELS[name]}: pending, {missing}")
        else:
            systems.append(system)
    try:
        if any(s.needs_rabbitmq for s in systems):
            run.start_rabbitmq()
        if not run.rabbitmq_url:
            systems = [s for s in systems if not s.needs_rabbitmq]
        machine = describe(run.rabbitmq_url)
        for job in plan_jobs(systems, args.only, plan.reps):
            run.run(job)
    finally:
        run.stop_services()
    appendices = run.run_extras([s.name for s in systems])
    results = report.Results(run.recorders.values())
    found = report.targets(results, [s.name for s in systems if s.kind == "fleet"], plan)
    found += extra_targets(appendices)
    today = datetime.date.today().isoformat()
    out = args.out or DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    name = f"{today}-quick" if args.quick else today
    path = out / f"{name}.md"
    text = report.render(
        title_date=today,
        machine=machine,
        plan=plan,
        command=" ".join(["python -m bench", *argv]),
        duration=time.monotonic() - began,
        results=results,
        found=found,
        statuses=run.statuses,
        appendices=appendices,
    )
    path.write_text(text)
    raw = {"machine": machine, "recorders": [r.to_json() for r in run.recorders.values()]}
    (out / f"{name}.json").write_text(json.dumps(raw, indent=1))
    if args.out is None and not args.quick:
        rel = path.relative_to(REPO).as_posix()
        section = report.readme_section(today, machine, results, found, rel)
        report.update_readme(REPO / "README.md", section)
    print()
    print(report.results_table(results))
    print()
    print(report.targets_table(found))
    print(f"\nbench: report {path}")
    if args.keep or run.failed:
        print(f"bench: run folder kept: {run.dir}")
    else:
        shutil.rmtree(run.dir, ignore_errors=True)
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
