"""The `stale` workload: copies of finished invocations left in the queue, and backlog.

Job: on one fleet configuration's pool (RabbitMQ + SQLite, 2 x 4 slots; see
`bench.workloads.run`), submit `plan.stale_tasks` invocations of `noop` in batches of
`plan.stale_batch` (`parallelize`), waiting for each batch before the next (issue 16
reported 6,481 stale copies left ready in `default` after 100,000 this way, republished
copies of waited-for invocations). Then, with every invocation finished, read what the
queue still holds: each message left is a stale copy (its invocation is final; a worker
would claim, fail and drop it), and the backlog figure (`fleet.backlog`), read at that
moment, must be 0: it counts stale copies out.

Contract: one pass (not `plan.reps`); records `throughput` (tasks/s), `stale copies
left` (ready messages in the queue and its urgent lane once all finished), `drain time`
(ms until they are gone) and `backlog after` (ready + due from `fleet.backlog`, what a
scaler sees). Results are checked (every value comes back), speed never.
"""

from __future__ import annotations

import time
from types import ModuleType

from bench.measure import Plan, Recorder
from bench.procs import Pool
from fleet.backlog import backlogs

TIMEOUT = 300.0
DRAIN_LIMIT = 60.0


def stale(tasks: ModuleType, plan: Plan, rec: Recorder, pool: Pool) -> None:
    app = tasks.app
    queue = app.settings.default_queue
    broker = app.runtime().broker
    batch = plan.stale_batch
    # One pass whatever `reps`: 100,000 invocations take minutes.
    start = time.perf_counter()
    for first in range(0, plan.stale_tasks, batch):
        n = min(batch, plan.stale_tasks - first)
        values = tasks.noop.parallelize(range(first, first + n)).results(TIMEOUT)
        assert values == list(range(first, first + n)), "stale: wrong values"
    took = time.perf_counter() - start
    left = broker.stats(queue).ready
    after = backlogs(app)[queue]  # at once: stale copies must be counted out
    drained = time.perf_counter()
    while broker.stats(queue).ready > 0 and time.perf_counter() - drained < DRAIN_LIMIT:
        time.sleep(0.01)
    drain = time.perf_counter() - drained
    rec.add("throughput", "tasks/s", plan.stale_tasks / took, "higher")
    rec.add("stale copies left", "messages", float(left))
    rec.add("drain time", "ms", 1000 * drain if left else 0.0)
    rec.add("backlog after", "invocations", float(after.total))
    rec.note(
        f"stale: {plan.stale_tasks} invocations in batches of {batch}, each waited on; "
        f"{left} stale copies left in {queue!r} afterwards"
    )
