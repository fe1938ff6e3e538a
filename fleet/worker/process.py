"""One worker process: receive, claim, ack, run on slots, commit, beat.

Job: turn messages into finished invocations, as many at a time as it has slots.

Contract (the hot path, see ARCHITECTURE.md):
1. Receive at most as many messages as there are free slots (urgent first).
2. Dead-letter what cannot run (undecodable body, a task not in the app's registry, a
   codec other than the setting `codec`) with the reason; the invocation, if there is
   one, is marked FAILED; the loop goes on. Nothing a message names is imported.
3. Claim the rest in the state store in one batch (PENDING -> RUNNING, owner = this
   process), hand those won to their threads, then ack them all (`fleet.worker.intake`:
   nothing claimed is dropped, a claim whose outcome is unknown is read back, a
   message whose record is not written yet is held without a slot, at most
   `prefetch()` of them and each at most `RECORD_GRACE`). The thread that received
   them runs the last one itself (`fleet.worker.baton`: no hand-off for a lone
   message; another thread takes over the consumer if it runs long). A message is
   thus acked as its task starts, never held unacknowledged while it runs; an
   invocation whose owner dies is found RUNNING under a dead owner and requeued by
   recovery, and one its live owner does not hold (not in its heartbeat) is requeued
   by the leader as well (`fleet.worker.recovery.recover_unheld`).
4. Run each claimed invocation on a slot; its thread commits the outcome (with those of
   the invocations that finish meanwhile, see `committer`).
5. A heartbeat record (id, host, pid, queues, invocations in hand) is written every
   `heartbeat_interval`, one write per interval, never per task.
On `stop()` it takes no new work, lets running invocations finish within the grace
period, and returns; whatever it still owns is requeued by its supervisor. A task past
its hard time limit in a process of `fleet worker` stops the process the same way (its
neighbours finish; those still running after the grace period are requeued with their
attempt given back, uncharged) and the process exits with `EXIT_HARD_LIMIT` to be
replaced (see `_hard_limit`). The thread calling `run()` only waits for that; pool
threads drive the consumer.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleet._urls import secrets_of
from fleet.broker import Consumer
from fleet.state import RunnerRecord
from fleet.worker import _same_host, recovery
from fleet.worker._early import EarlyArrivals
from fleet.worker._hard_limit import on_hard_limit
from fleet.worker.baton import Baton
from fleet.worker.child import import_task_modules
from fleet.worker.committer import Committer
from fleet.worker.executor import Executor, Running
from fleet.worker.health import ProcessHealth
from fleet.worker.intake import Intake, Job
from fleet.worker.limits import Watchdog, resident_mib
from fleet.worker.slots import Slots, ThreadPool

if TYPE_CHECKING:
    from fleet.app import Fleet


log = logging.getLogger(__name__)
EXIT_HARD_LIMIT = 75
"""Exit status of a worker process that stopped itself to end a task past its hard limit."""


def runner_id(kind: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{os.urandom(3).hex()}"


class WorkerProcess:
    """Consumes `queues` and runs up to `threads` invocations at once."""

    def __init__(
        self,
        app: Fleet,
        *,
        queues: Sequence[str] = (),
        threads: int = 1,
        runner: str = "",
        supervisor: str = "",
    ) -> None:
        self.app = app
        import_task_modules(app)  # before anything is received: tasks resolve by registry
        self.runtime = app.runtime()
        self.queues = app.queues.worker_queues(queues, app.tasks.values())
        self.threads = max(1, threads)
        self.id = runner or runner_id("process")
        self.supervisor = supervisor
        self.in_hand: dict[str, Running] = {}
        self.processed = 0
        self._stop = threading.Event()
        self._finished = threading.Event()
        """Set once the drain is over: the heartbeat goes on until then."""
        self._consumer: Consumer | None = None
        self._starved = False
        """True while the dispatcher may be waiting for a slot (see `_slot_freed`)."""
        self.slots = Slots(self.threads, self._slot_freed)
        self.early = EarlyArrivals(limit=self.prefetch())
        self.pool = ThreadPool(f"fleet-task-{self.id[-6:]}")
        self.baton = Baton(lambda: self.pool.submit(self._drive))
        self.committer = Committer(
            self.runtime.state,
            self.runtime.broker,
            self.runtime.waiter,
            self._notify,
            app.dispatcher,
        )
        self.executor = Executor(
            app, self.runtime, self.id, self.slots, self.committer, self.in_hand
        )
        self.executor.on_done = self._task_done
        self.executor.on_wait = self.baton.pass_on
        self.exit_on_hard_limit = False
        self.hung: set[str] = set()
        """Invocations past their hard limit whose threads may never return (see
        `_hard_limit`); the drain does not wait for them."""
        self.watchdog = Watchdog(self.in_hand, self._hard_limit)
        self.intake = Intake(
            app,
            self.runtime,
            self.id,
            slots=self.slots,
            early=self.early,
            in_hand=self.in_hand,
            executor=self.executor,
            watchdog=self.watchdog,
            stopping=self._stop,
            on_started=self._started,
        )
        self._done = threading.Condition()
        self.started = time.time()
        self.ready = threading.Event()
        settings = app.settings
        self.health = ProcessHealth(
            settings.health_dir, secrets_of(settings.broker_url) + secrets_of(settings.state_url)
        )

    # -- lifecycle --------------------------------------------------------------------

    def run(self) -> None:
        """Work until `stop()`; then drain within the grace period."""
        self.runtime.declare(self.queues)
        self.runtime.waiter.on_cancel = self.cancel
        self.beat()
        beater = threading.Thread(target=self._beat_loop, name="fleet-heartbeat", daemon=True)
        beater.start()
        log.info(
            "worker %s consuming %s with %d slot(s)", self.id, ",".join(self.queues), self.threads
        )
        self.pool.submit(self._drive)
        self._stop.wait()
        self._drain(beater)

    def _drive(self) -> None:
        """Drive the consumer while this thread holds the baton; run what it lends us."""
        if not self.baton.take():
            return
        try:
            delay = 0.1
            while not self._stop.is_set():
                try:
                    job = self._consume()
                    delay = 0.1
                except Exception as exc:
                    log.exception(
                        "worker %s: broker or state store failed; retrying in %.1fs",
                        self.id,
                        delay,
                    )
                    self.health.failed(exc)
                    self._close_consumer()
                    self._stop.wait(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 10.0)
                    continue
                if job is not None:
                    self.baton.lend()
                    try:
                        job()
                    finally:
                        mine = self.baton.back()
                    if not mine:
                        return  # passed on meanwhile: back to the pool, an ordinary thread
        finally:
            # Still ours when stopping, or when something escaped: let another thread
            # drive unless the process stops.
            if self.baton.drop() and not self._stop.is_set():
                self.pool.submit(self._drive)

    def stop(self) -> None:
        self._stop.set()
        self._wakeup()

    def _task_done(self) -> None:
        with self._done:
            self._done.notify_all()

    def _slot_freed(self) -> None:
        # Only a dispatcher waiting for a slot needs waking: one with free slots is
        # already waiting for messages, and waking it would only make it compete for
        # the GIL with the task thread, which commits its outcome next.
        if self._starved:
            self._wakeup()

    def _notify(self, notes: Sequence[tuple[str, bytes]]) -> None:
        """Result notifications: on the consumer's connection when this thread may use
        it (the invocation runs on the baton's lender), else through the broker."""
        consumer = self._consumer
        if consumer is None or not self.baton.run_if_lent(lambda: consumer.notify(notes)):
            self.runtime.broker.notify(notes)

    def _wakeup(self) -> None:
        consumer = self._consumer
        if consumer is not None:
            consumer.wakeup()

    def _drain(self, beater: threading.Thread) -> None:
        """Finish what is in hand within the grace period, beating all along: a draining
        process is alive, and its invocations must not be recovered from under it."""
        self._wakeup()
        self.baton.close()
        self._close_consumer()
        with self._done:
            self._done.wait_for(self._drained, self.app.settings.shutdown_grace)
        self.committer.close(timeout=10)
        self.watchdog.close()
        self.pool.shutdown()
        left = set(self.in_hand) - self.hung
        if left and self.hung:  # replaced for a hard limit: not their fault, not charged
            try:
                left -= recovery.requeue_uncharged(self.app, left, self.id)
            except Exception:
                log.warning(
                    "worker %s: requeue failed; the supervisor will", self.id, exc_info=True
                )
        self._finished.set()
        beater.join(timeout=self.app.settings.heartbeat_interval + 1)
        self.beat(stopped=not left)  # last: no beat of the loop may come after it
        if left:
            log.warning(
                "worker %s: %d invocation(s) still running at shutdown; they will be requeued",
                self.id,
                len(left),
            )

    def _drained(self) -> bool:
        return set(self.in_hand) <= self.hung

    def _close_consumer(self) -> None:
        self.early.clear()  # their deliveries go back with the consumer
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:
                log.debug("closing consumer failed", exc_info=True)

    # -- consuming --------------------------------------------------------------------

    def _consume(self) -> Job | None:
        """Receive, claim and start work until there is an invocation for this thread.

        A claim won is put in `jobs` before anything else can raise; on an error the
        jobs are handed to the pool before it propagates: nothing claimed is dropped.
        """
        if self._consumer is None:
            self._consumer = self.runtime.broker.consumer(self.queues, self.prefetch())
            self.ready.set()
        consumer = self._consumer
        early = self.early
        jobs: list[Job] = []
        try:
            while not jobs and not self._stop.is_set():
                self._starved = True  # set first: a slot freed while we look must wake us
                free = self.slots.free()
                self._starved = free == 0
                now = time.monotonic()
                due = early.due(now, free) if early else []
                if due:  # early arrivals first, each on a slot taken for it
                    self.slots.take(len(due))
                    again = [(e.delivery, e.envelope, e.task) for e in due]
                    self.intake.claim(consumer, again, jobs, due)
                    continue
                timeout = 1.0
                if early and free:
                    timeout = min(timeout, early.wait(now) or 0.0)
                room = max(0, free - early.blocking(now)) if early else free
                deliveries = consumer.receive(room, timeout=timeout)
                if deliveries:
                    self.intake.dispatch(consumer, deliveries, jobs)
                self.health.consuming()  # received and claimed: the loop works
        except BaseException:
            for job in jobs:
                self.pool.submit(job)
            raise
        if not jobs:
            return None
        for job in jobs[:-1]:
            self.pool.submit(job)
        return jobs[-1]

    def _started(self, count: int) -> None:
        self.processed += count
        recycle_after = self.app.settings.max_tasks_per_child
        if recycle_after and self.processed >= recycle_after:
            log.info("worker %s: recycling after %d tasks", self.id, self.processed)
            self.stop()

    def prefetch(self) -> int:
        """Messages this process may hold undelivered: the largest `prefetch` of its
        queues (at least one per slot), else two per slot (so that acks can be sent in
        batches of one per slot while as many messages wait for the slots)."""
        configured = max(self.app.queues.get(q).prefetch for q in self.queues)
        return max(self.threads, configured) if configured else 2 * self.threads

    # -- heartbeats and cancellation ----------------------------------------------------

    def record(self, stopped: bool = False) -> RunnerRecord:
        return RunnerRecord(
            id=self.id,
            kind="process",
            host=socket.gethostname(),
            pid=os.getpid(),
            beat=time.time(),
            parent=self.supervisor,
            queues=tuple(self.queues),
            in_hand=tuple(self.in_hand),
            started=self.started,
            stopped=stopped,
            info={
                "address": self.runtime.waiter.address,
                "threads": self.threads,
                "processed": self.processed,
                **_same_host.info(self.app.settings.host_id),
            },
        )

    def beat(self, stopped: bool = False) -> None:
        consumer = self._consumer
        self.health.write(
            stopped or self._stop.is_set(), consumer is not None and consumer.attached
        )
        try:
            self.runtime.state.beat([self.record(stopped)])
        except Exception:
            log.warning("worker %s: heartbeat write failed", self.id, exc_info=True)

    def _beat_loop(self) -> None:
        interval = self.app.settings.heartbeat_interval
        ceiling = self.app.settings.max_memory_per_child
        while not self._finished.wait(interval):
            self.beat()
            if ceiling and not self._stop.is_set() and resident_mib() > ceiling:
                log.info("worker %s: recycling at %.0f MiB", self.id, resident_mib())
                self.stop()

    def cancel(self, invocation_id: str) -> None:
        """Stop an invocation in hand (cancel requested elsewhere; state already final)."""
        running = self.in_hand.get(invocation_id)
        if running is None:
            return
        running.cancelled = True
        log.info("cancelling %s", invocation_id, extra={"invocation_id": invocation_id})
        running.interrupt()

    def _hard_limit(self, invocation_id: str) -> None:
        """Fail (or retry) an invocation past its hard limit and free its slot (see
        `fleet.worker._hard_limit`)."""
        on_hard_limit(self, invocation_id)
