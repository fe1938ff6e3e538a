"""One measured run in a process of its own: `python -m bench.child SPEC.json`.

Job: run one system's workloads, as the spec written by `bench.__main__` says, in a
fresh interpreter (so each fleet configuration imports `bench.tasks` against its own
environment, and no run inherits another's connections or counters), and write what it
measured as JSON.

Contract: the spec holds `system`, `workloads`, `plan`, `logs` (a folder), `out` (the
JSON file to write) and `rabbitmq_url`; the `FLEET__*` / `BENCH_*` environment was set
by the parent. The output is `{"recorders": [...], "error": str | None}`; a failure of
one run is reported there, never raised past it. SIGTERM ends the run through the normal
clean-up path (the worker pools it started are stopped).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from bench.configs import SYSTEMS
from bench.measure import Plan, Recorder


def _terminate(*_: object) -> None:
    raise SystemExit(143)


def run(spec: dict[str, Any], recorders: dict[tuple[str, str], Recorder]) -> None:
    """Run the spec; what it measured goes into `recorders` as it goes."""
    system = SYSTEMS[spec["system"]]
    plan = Plan(**spec["plan"])
    logs = Path(spec["logs"])
    workloads: list[str] = spec["workloads"]

    def recorder(name: str, workload: str) -> Recorder:
        key = (name, workload)
        if key not in recorders:
            recorders[key] = Recorder(name, workload)
        return recorders[key]

    if system.kind == "fleet":
        from bench import workloads as fleet_workloads

        (workload,) = workloads
        env = {k: v for k, v in os.environ.items() if k.startswith("FLEET__")}
        log = logs / f"{system.name}-{workload}.log"
        fleet_workloads.run(workload, plan, recorder(system.name, workload), log, env)
    elif system.kind == "pika":
        from bench.baselines import pika_run

        for queue_type in ("quorum", "classic"):
            name = f"pika-{queue_type}"
            pika_run(
                spec["rabbitmq_url"],
                queue_type,
                plan,
                lambda w, name=name: recorder(name, w),  # type: ignore[misc]
                set(workloads),
                logs,
            )
    elif system.kind == "celery":
        from bench.celery_run import celery_run

        env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}
        celery_run(
            spec["rabbitmq_url"],
            plan,
            lambda w: recorder(system.name, w),
            set(workloads),
            logs,
            env,
        )
    else:
        from bench.baselines import dramatiq_run

        env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}
        dramatiq_run(
            spec["rabbitmq_url"],
            plan,
            lambda w: recorder(system.name, w),
            set(workloads),
            logs,
            env,
        )


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    spec = json.loads(Path(argv[0]).read_text())
    recorders: dict[tuple[str, str], Recorder] = {}
    output: dict[str, Any] = {"recorders": [], "error": None}
    try:
        run(spec, recorders)
    except BaseException as exc:
        output["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        traceback.print_exc()
    output["recorders"] = [r.to_json() for r in recorders.values() if r.samples or r.notes]
    Path(spec["out"]).write_text(json.dumps(output, indent=1))
    return 0 if output["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
