"""One `python -m bench` run: the private RabbitMQ node, the child runs, their results.

Job: decide the order of the child runs, start each one (`python -m bench.child`) with
its own environment and a deadline, collect and merge what they measured, and run the
broker-level and MongoDB round-trip scripts when they are in the checkout.

Contract:
- ONE RabbitMQ node (fleet.testing.rabbitmq, 127.0.0.1, ports of its own) serves every
  system that needs it; `stop_services` stops it by PID. The extra scripts run after
  that (`broker_rabbitmq` starts a node of its own), so two never run at once.
- Order: systems without RabbitMQ first; then W1 and W2 of the RabbitMQ systems
  (fleet, raw pika, Dramatiq, Celery) interleaved repetition by repetition, so that the ratios
  between them are not skewed by load that comes and goes on the machine; then their
  other workloads. A fleet child runs one workload on a fresh database and queue.
- Before each child starts, the files that earlier runs wrote are flushed to disk
  (`os.sync`), so that their writeback does not slow the fsyncs of the run measured
  next (quorum queues and SQLite checkpoints both wait on the disk).
- A child that fails or passes its deadline (SIGTERM, then SIGKILL of its process
  tree) is reported in `statuses` and marks the run failed; the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.configs import System, fleet_env
from bench.measure import Plan, Recorder
from bench.procs import REPO, python_module
from fleet.testing._procs import alive, process_tree, tail

COMPARED = ("W1", "W2")
"""Workloads whose RabbitMQ systems run interleaved, repetition by repetition."""
EXTRAS = {
    "broker_rabbitmq": ("rabbitmq-sqlite", "W1", "Broker-level RabbitMQ benchmark"),
    "mongo_roundtrips": ("rabbitmq-mongo", "rt", "MongoDB commands per invocation"),
    "mongo_e2e": ("rabbitmq-mongo", "rt", "MongoDB commands per invocation end to end"),
    "recovery": ("rabbitmq-sqlite", "recovery", "Recovery time of a SIGKILLed worker"),
    "duplicates": (
        "rabbitmq-sqlite",
        "duplicates",
        "Bodies completed twice while worker children are SIGKILLed",
    ),
}
"""Scripts of their own (`bench/<module>.py`, run as `python -m bench.<module>`): the
system and workload whose selection runs them, and the title of their output.
`duplicates` starts a RabbitMQ node of its own too and measures fleet (both stacks)
against Celery's reliable setting and Dramatiq."""


@dataclass(frozen=True)
class Job:
    system: System
    workloads: tuple[str, ...]
    reps: int
    label: str = ""


def plan_jobs(systems: list[System], only: list[str], reps: int) -> list[Job]:
    """Child runs in the order described in the module docstring."""
    jobs: list[Job] = []

    def add(system: System, workloads: list[str], n: int, label: str = "") -> None:
        if not workloads:
            return
        if system.kind == "fleet":
            jobs.extend(Job(system, (w,), n, label) for w in workloads)
        else:
            jobs.append(Job(system, tuple(workloads), n, label))

    def picked(system: System, among: tuple[str, ...] | None = None) -> list[str]:
        return [w for w in system.workloads if w in only and (among is None or w in among)]

    for system in systems:
        if not system.needs_rabbitmq:
            add(system, picked(system), reps)
    rabbit = [s for s in systems if s.needs_rabbitmq]
    for rep in range(reps):
        for system in rabbit:
            add(system, picked(system, COMPARED), 1, f"rep {rep + 1}/{reps}")
    others = tuple(w for w in only if w not in COMPARED)
    for system in rabbit:
        add(system, picked(system, others), reps)
    return jobs


class Run:
    """Services, child runs and merged results of one invocation."""

    def __init__(self, plan: Plan, only: list[str], quick: bool, child_timeout: float) -> None:
        self.plan = plan
        self.only = only
        self.quick = quick
        self.child_timeout = child_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.recorders: dict[tuple[str, str], Recorder] = {}
        self.statuses: list[str] = []
        self.failed = False
        self.rabbitmq: Any = None
        self.rabbitmq_url = ""
        self._count = 0

    # -- services -------------------------------------------------------------------
    def start_rabbitmq(self) -> None:
        from fleet.testing.rabbitmq import RabbitMQServer, ServiceError

        base = self.dir / "rabbitmq"
        base.mkdir()
        server = RabbitMQServer(base_dir=base)
        try:
            self.rabbitmq = server.start()
            self.rabbitmq_url = server.url
            print(f"bench: RabbitMQ on {server.url} (stopped by PID at the end)", flush=True)
        except ServiceError as exc:
            self.statuses.append(f"RabbitMQ could not be started: {exc}".split("\n")[0])

    def stop_services(self) -> None:
        if self.rabbitmq is not None:
            self.rabbitmq.close()
            self.rabbitmq = None

    # -- child runs -----------------------------------------------------------------
    def run(self, job: Job) -> None:
        system = job.system
        os.sync()  # see the module docstring
        if system.kind == "fleet":
            env = fleet_env(system, self.dir, job.workloads[0], self.rabbitmq_url)
        elif system.kind == "dramatiq":
            from bench.baselines import dramatiq_env

            env = dramatiq_env(self.rabbitmq_url, confirm=system.variant == "confirms")
        elif system.kind == "celery":
            from bench.celery_run import celery_env

            env = celery_env(self.rabbitmq_url, reliable=system.variant == "reliable")
        else:
            env = {}
        if system.needs_rabbitmq and self.rabbitmq is not None:
            pids = sorted(pid for pid, _ in self.rabbitmq.processes())
            env["BENCH_RABBITMQ_PIDS"] = ",".join(map(str, pids))
        self._count += 1
        tag = f"{self._count:02d}-{system.name}-{'-'.join(job.workloads)}"
        spec_path, out_path = self.dir / f"{tag}.spec.json", self.dir / f"{tag}.out.json"
        spec = {
            "system": system.name,
            "workloads": list(job.workloads),
            "plan": dataclasses.replace(self.plan, reps=job.reps).to_json(),
            "logs": str(self.logs),
            "out": str(out_path),
            "rabbitmq_url": self.rabbitmq_url,
        }
        spec_path.write_text(json.dumps(spec))
        log_path = self.logs / f"{tag}.child.log"
        what = f"{','.join(job.workloads)} {job.label}".strip()
        print(f"bench: {system.name:<16} {what:<20}", end="", flush=True)
        began = time.monotonic()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                python_module("bench.child", str(spec_path)),
                env={**_clean_environ(), **env},
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                proc.wait(self.child_timeout)
            except subprocess.TimeoutExpired:
                _terminate(proc)
        took = time.monotonic() - began
        output = json.loads(out_path.read_text()) if out_path.exists() else None
        if output is None or output["error"]:
            self.failed = True
            why = output["error"] if output else f"no result (exit {proc.returncode}, timeout?)"
            self.statuses.append(f"{system.name} {what} failed: {why}")
            print(f" FAILED after {took:.0f}s: {why}\n{tail(log_path, 15)}", flush=True)
        else:
            print(f" {took:5.1f}s", flush=True)
        for raw in output["recorders"] if output else ():
            self._merge(Recorder.from_json(raw))

    def _merge(self, rec: Recorder) -> None:
        key = (rec.system, rec.workload)
        mine = self.recorders.get(key)
        if mine is None:
            self.recorders[key] = rec
            return
        for metric, sample in rec.samples.items():
            if metric in mine.samples:
                mine.samples[metric].values.extend(sample.values)
            else:
                mine.samples[metric] = sample
        for note in rec.notes:
            mine.note(note)

    def run_extras(self, systems: list[str]) -> dict[str, str]:
        """Output of the scripts of `EXTRAS` (broker level, MongoDB round trips,
        duplicates under kills), when present."""
        found: dict[str, str] = {}
        for module, (system, workload, what) in EXTRAS.items():
            title = f"{what} (bench/{module}.py)"
            if system not in systems or workload not in self.only:
                continue
            if not (REPO / "bench" / f"{module}.py").exists():
                self.statuses.append(f"{title}: pending, the script is not in this checkout yet")
                continue
            if self.quick:
                self.statuses.append(f"{title}: not run by --quick")
                continue
            print(f"bench: {module}", flush=True)
            try:
                done = subprocess.run(
                    python_module(f"bench.{module}"),
                    env=_clean_environ(),
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=self.child_timeout,
                    check=False,
                )
                text = done.stdout
                if done.returncode:
                    text += f"\n[exit status {done.returncode}]\n{done.stderr[-4000:]}"
            except subprocess.TimeoutExpired:
                text = f"timed out after {self.child_timeout:.0f} s"
            found[title] = text
        return found


def _clean_environ() -> dict[str, str]:
    """This environment without FLEET__* settings: each run sets its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLEET__")}


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child run (it stops its pools), then SIGKILL whatever is left."""
    tree = process_tree(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for ident in tree:
        if alive(ident):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(ident[0], signal.SIGKILL)
