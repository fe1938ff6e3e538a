"""The `workflows` workload: what a durable workflow costs over plain tasks.

Job: on the embedded stack's pool (see `bench.workloads.run`), measure
1. per-step overhead: `wf_chain(n)` (a workflow making `n` sequential child calls,
   each recorded) against `plain_chain(n)` (a plain task making the same calls),
   alternating per repetition; the ratio of their wall times (issue 13's target:
   <= 1.3x);
2. replay cost: a finished `wf_chain(1000)` replayed in the harness process against
   its recorded history (`WorkflowRun.replay`: the history loaded, every step matched,
   every child's result read back from the store; target < 0.5 s), and the replay
   engine alone on the same history (no result reads).

Contract: records `plain chain`, `workflow chain` (s), `per-step overhead` (x),
`replay 1000 steps` (s) and `replay engine 1000 steps` (ms). Results are checked, speed never.
"""

from __future__ import annotations

import time
from types import ModuleType

from bench.measure import Plan, Recorder
from bench.procs import Pool
from fleet.codec import encode_call
from fleet.workflows import history_store
from fleet.workflows._replay import Replayer
from fleet.workflows._runtime import pack

TIMEOUT = 600.0
REPLAY_STEPS = 1000


def _timed(tasks: ModuleType, which: str, n: int) -> float:
    start = time.perf_counter()
    value = getattr(tasks, which)(n).result(TIMEOUT)
    took = time.perf_counter() - start
    assert value == n * (n - 1) // 2, f"{which} returned {value!r}"
    return took


def workflows(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    steps = plan.wf_steps
    _timed(tasks, "plain_chain", 20)  # warm-up
    _timed(tasks, "wf_chain", 20)
    for _ in range(plan.reps):
        plain = _timed(tasks, "plain_chain", steps)
        flow = _timed(tasks, "wf_chain", steps)
        rec.add(f"plain chain, {steps} steps", "s", plain)
        rec.add(f"workflow chain, {steps} steps", "s", flow)
        rec.add("per-step overhead", "x", flow / plain)
    handle = tasks.wf_chain(REPLAY_STEPS)
    assert handle.result(TIMEOUT) == REPLAY_STEPS * (REPLAY_STEPS - 1) // 2
    run = tasks.app.workflow_run(handle.id)
    store = history_store(tasks.app.runtime().state)
    codec = tasks.app.codec
    params = tasks.noop.params
    calls = [
        pack([encode_call(codec, tasks.noop.name, (i,), {}, params)]) for i in range(REPLAY_STEPS)
    ]
    for _ in range(plan.reps):
        start = time.perf_counter()
        assert run.replay() == REPLAY_STEPS * (REPLAY_STEPS - 1) // 2
        rec.add(f"replay {REPLAY_STEPS} steps", "s", time.perf_counter() - start)
        start = time.perf_counter()
        replay = Replayer(store, handle.id, handle.id)
        for data in calls:
            assert replay.step("call", tasks.noop.name, data)[1]
        took = time.perf_counter() - start
        rec.add(f"replay engine {REPLAY_STEPS} steps", "ms", 1000 * took)
    rec.note(
        f"per-step overhead: wall time of a workflow making {steps} sequential child calls "
        "over a plain task making the same calls, alternating; replay: a finished "
        f"{REPLAY_STEPS}-step workflow replayed in the harness against its history"
    )
