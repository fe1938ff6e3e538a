"""An invocation past its hard time limit: fail it, free its slot, replace the process.

Job: what `fleet.worker.process.WorkerProcess` does when its `Watchdog` finds an
invocation in hand past its task's `hard_time_limit` (`on_hard_limit`).

Contract: an invocation no longer in hand, or whose task cannot be resolved, is left
alone. Otherwise it is marked cancelled, one error is logged on the worker's logger
(`fleet.worker.process`), its failure (`HardTimeLimitExceeded`, attempt counted) goes
to the committer, its thread is interrupted and the drain is told: its slot is free.
With `exit_on_hard_limit` it is recorded as hung and the process stops taking work
before that commit (see `on_hard_limit`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fleet.errors import HardTimeLimitExceeded

if TYPE_CHECKING:
    from fleet.worker.process import WorkerProcess

log = logging.getLogger("fleet.worker.process")


def on_hard_limit(worker: WorkerProcess, invocation_id: str) -> None:
    """Fail (or retry) an invocation past its hard limit and free its slot.

    Runs on a thread of its own (`Watchdog`). In a process of `fleet worker`
    (`exit_on_hard_limit`), its thread may be stuck where no exception reaches it, so
    the process is replaced without charging the other invocations it runs: it stops
    taking work, lets them finish within `shutdown_grace` (whatever is left is
    requeued with its attempt given back), and exits with `EXIT_HARD_LIMIT`
    (`child_main`); the supervisor starts a new one at once.
    """
    running = worker.in_hand.get(invocation_id)
    task = worker.intake.resolve(running.envelope) if running is not None else None
    if running is None or task is None:
        return
    running.cancelled = True
    running.why = "it ran past its hard time limit (failure committed by the watchdog)"
    limit = task.options.hard_time_limit
    log.error(
        "%s %s: hard time limit of %ss exceeded%s",
        task.name,
        invocation_id,
        limit,
        "; replacing the process once its other invocations finish"
        if worker.exit_on_hard_limit
        else "",
        extra={"invocation_id": invocation_id, "task": task.name},
    )
    if worker.exit_on_hard_limit:
        worker.hung.add(invocation_id)
        worker.stop()  # first: take no new work even if the commit below waits
    exc = HardTimeLimitExceeded(f"{task.name} ran past its hard time limit of {limit}s")
    change = worker.executor.failure(running.envelope, task, running.envelope.attempt + 1, exc)
    worker.committer.put(change, running.envelope.reply_to, task.name)
    running.interrupt()  # reaches the thread if it ever runs Python code again
    worker._task_done()  # the drain may be waiting only for this one
