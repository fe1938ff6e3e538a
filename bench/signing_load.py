"""The `signing` workload: what HMAC message signing costs W1.

Job: on one fleet configuration, measure W1 throughput (one call per task, as in W1)
with signing off and on, alternating per repetition (the order flips each time so that
a drift of the machine's load does not favour one side). Each side gets a pool of its
own: workers read `signing_keys` at start (FLEET__SIGNING_KEYS); the producer, this
process, signs when its app's settings carry the keys.

Contract: records `W1 throughput, unsigned`, `W1 throughput, signed` (tasks/s) and
`overhead, signed` (percent lost, per repetition), and `sign + check per message` (CPU
microseconds for one W1 message, measured in this process: steadier than throughput on
a loaded machine). Results are checked, speed never.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from bench.measure import Plan, Recorder
from bench.procs import fleet_pool
from fleet.invocation import Group

TIMEOUT = 300.0
KEYS = "bench-2:" + "k" * 32 + ",bench-1:" + "o" * 32
"""The current key and one being rotated out: workers accept both, the producer signs
with the first."""


def signing(plan: Plan, rec: Recorder, log_path: Path, env: dict[str, str]) -> None:
    from bench import tasks
    from bench.workloads import APP, wait_consumers

    app = tasks.app
    unsigned = dataclasses.replace(app.settings, signing_keys="")
    signed = dataclasses.replace(app.settings, signing_keys=KEYS)
    sides = [("unsigned", unsigned, env), ("signed", signed, {**env, "FLEET__SIGNING_KEYS": KEYS})]
    try:
        for rep in range(plan.reps):
            rates: dict[str, float] = {}
            for label, settings, pool_env in sides if rep % 2 == 0 else sides[::-1]:
                app.settings = settings  # what the producer's messages carry
                log = log_path.with_name(f"{log_path.stem}-{label}.log")
                with fleet_pool(plan.processes, plan.threads, pool_env, log, APP) as pool:
                    wait_consumers(tasks, pool, plan.processes)
                    Group([tasks.noop(i) for i in range(plan.w1_warmup)]).results(TIMEOUT)
                    start = time.perf_counter()
                    values = Group([tasks.noop(i) for i in range(plan.w1_tasks)]).results(TIMEOUT)
                    rates[label] = plan.w1_tasks / (time.perf_counter() - start)
                    assert values == list(range(plan.w1_tasks)), "W1 returned wrong values"
                    dead = app.runtime().broker.stats(app.settings.default_queue).dead
                    assert dead == 0, f"{dead} message(s) dead-lettered with {label} messages"
                rec.add(f"W1 throughput, {label}", "tasks/s", rates[label], "higher")
            rec.add("overhead, signed", "%", 100 * (1 - rates["signed"] / rates["unsigned"]))
    finally:
        app.settings = unsigned
    rec.add("sign + check per message", "us", _sign_and_check_us(app), "lower")
    rec.note("W1 one call per task; a pool of its own per side, sides alternated per repetition")


def _sign_and_check_us(app: object) -> float:
    """CPU microseconds to sign one W1 message and check it (producer + worker share)."""
    from bench import tasks
    from fleet.signing import parse_keys

    signer = parse_keys(KEYS)
    _, messages = tasks.app.prepare(tasks.noop, [tasks.noop.bind((1,), {})])
    body = messages[0].body
    n = 20_000
    start = time.process_time()
    for _ in range(n):
        signer.check(body, signer.headers(body))
    return (time.process_time() - start) / n * 1e6
