"""One worker process: receive, claim, ack, run on slots, commit, beat.

Job: turn messages into finished invocations, as many at a time as it has slots.

Contract (the hot path, see ARCHITECTURE.md):
1. Receive at most as many messages as there are free slots (urgent first).
2. Dead-letter what cannot run (undecodable body, unknown task) with the reason; the
   invocation, if there is one, is marked FAILED; the loop goes on.
3. Claim the rest in the state store in one batch (PENDING -> RUNNING, owner = this
   process), hand those won to their threads, then ack them all. The thread that
   received them runs the last one itself (`fleet.worker.baton`: no hand-off for a
   lone message; another thread takes over the consumer if it runs long). A lost
   claim whose record exists is a duplicate delivery: acked and dropped. One whose
   record does not exist yet (its producer writes it while the broker confirms, see
   `fleet.app`) is held unacked, its slot reserved, and claimed again after 1 ms,
   2 ms, ... (at most 0.1 s apart); after `RECORD_GRACE` seconds it is dead-lettered
   (`fleet.worker._early`). A message is thus acked as its task starts, never held
   unacknowledged while it runs; an invocation whose owner dies is found RUNNING under
   a dead owner and requeued by recovery.
4. Run each claimed invocation on a slot; its thread commits the outcome (with those of
   the invocations that finish meanwhile, see `committer`).
5. A heartbeat record (id, host, pid, queues, invocations in hand) is written every
   `heartbeat_interval`, one write per interval, never per task.
On `stop()` it takes no new work, lets running invocations finish within the grace
period, and returns; whatever it still owns is requeued by its supervisor. The thread
calling `run()` only waits for that; pool threads drive the consumer.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fleet._envelope import Envelope, unpack
from fleet._exceptions import error_info
from fleet.broker import Consumer, Delivery
from fleet.errors import HardTimeLimitExceeded, SerializationError, UnknownTaskError
from fleet.state import Change, RunnerRecord
from fleet.status import CLAIMABLE, Status
from fleet.worker._early import Early, EarlyArrivals
from fleet.worker.baton import Baton
from fleet.worker.committer import Committer
from fleet.worker.executor import Executor, Running
from fleet.worker.limits import Watchdog
from fleet.worker.slots import Slots, ThreadPool

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.task import Task

Job = Callable[[], None]

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
        self.runtime = app.runtime()
        self.queues = app.queues.worker_queues(queues, app.tasks.values())
        self.threads = max(1, threads)
        self.id = runner or runner_id("process")
        self.supervisor = supervisor
        self.in_hand: dict[str, Running] = {}
        self.processed = 0
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._starved = False
        """True while the dispatcher may be waiting for a slot (see `_slot_freed`)."""
        self.slots = Slots(self.threads, self._slot_freed)
        self.early = EarlyArrivals()
        self.pool = ThreadPool(f"fleet-task-{self.id[-6:]}")
        self.baton = Baton(lambda: self.pool.submit(self._drive))
        self.committer = Committer(
            self.runtime.state, self.runtime.broker, self.runtime.waiter, self._notify
        )
        self.executor = Executor(
            app, self.runtime, self.id, self.slots, self.committer, self.in_hand
        )
        self.executor.on_done = self._task_done
        self.executor.on_wait = self.baton.pass_on
        self.exit_on_hard_limit = False
        self.watchdog = Watchdog(self.in_hand, self._hard_limit)
        self._done = threading.Condition()
        self.started = time.time()
        self.ready = threading.Event()

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
        self._drain()
        beater.join(timeout=self.app.settings.heartbeat_interval + 1)

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
                except Exception:
                    log.exception(
                        "worker %s: broker or state store failed; retrying in %.1fs",
                        self.id,
                        delay,
                    )
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

    def _drain(self) -> None:
        self._wakeup()
        self.baton.close()
        self._close_consumer()
        with self._done:
            self._done.wait_for(lambda: not self.in_hand, self.app.settings.shutdown_grace)
        self.committer.close(timeout=10)
        self.watchdog.close()
        self.pool.shutdown()
        self.beat(stopped=not self.in_hand)
        if self.in_hand:
            log.warning(
                "worker %s: %d invocation(s) still running at shutdown; they will be requeued",
                self.id,
                len(self.in_hand),
            )

    def _close_consumer(self) -> None:
        self.slots.give_back(len(self.early.clear()))  # their deliveries go back too
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:
                log.debug("closing consumer failed", exc_info=True)

    # -- consuming --------------------------------------------------------------------

    def _consume(self) -> Job | None:
        """Receive, claim and start work until there is an invocation for this thread."""
        if self._consumer is None:
            self._consumer = self.runtime.broker.consumer(self.queues, self.prefetch())
            self.ready.set()
        consumer = self._consumer
        early = self.early
        while not self._stop.is_set():
            self._starved = True  # set first: a slot freed while we look must wake us
            free = self.slots.free()
            self._starved = free == 0
            timeout = 1.0
            if early:
                timeout = min(timeout, early.wait(time.monotonic()) or 0.0)
            deliveries = consumer.receive(free, timeout=timeout)
            jobs = self._dispatch(consumer, deliveries) if deliveries else []
            if early:
                due = early.due(time.monotonic())
                if due:
                    again = [(e.delivery, e.envelope, e.task) for e in due]
                    jobs += self._claim(consumer, again, due)
            if jobs:
                for job in jobs[:-1]:
                    self.pool.submit(job)
                return jobs[-1]
        return None

    def prefetch(self) -> int:
        """Messages this process may hold undelivered: the largest `prefetch` of its
        queues (at least one per slot), else two per slot (so that acks can be sent in
        batches of one per slot while as many messages wait for the slots)."""
        configured = max(self.app.queues.get(q).prefetch for q in self.queues)
        return max(self.threads, configured) if configured else 2 * self.threads

    def _dispatch(self, consumer: Consumer, deliveries: list[Delivery]) -> list[Job]:
        runnable: list[tuple[Delivery, Envelope, Task[Any, Any]]] = []
        for delivery in deliveries:
            try:
                envelope = unpack(delivery.message.body)
            except SerializationError as exc:
                self._reject(consumer, delivery, str(exc), None)
                continue
            task = self.resolve(envelope)
            if task is None:
                self._reject(consumer, delivery, f"unknown task {envelope.task!r}", envelope)
                continue
            runnable.append((delivery, envelope, task))
        if not runnable:
            return []
        self.slots.take(len(runnable))  # each keeps its slot until it runs or is dropped
        return self._claim(consumer, runnable)

    def _claim(
        self,
        consumer: Consumer,
        runnable: list[tuple[Delivery, Envelope, Task[Any, Any]]],
        retried: list[Early] | None = None,
    ) -> list[Job]:
        """Claim deliveries whose slots are taken; return the runs of those won, drop the
        duplicates, ack both, and hold those whose record is not there yet (`_early`)."""
        claims = [
            Change(env.id, Status.RUNNING, CLAIMABLE, by=self.id, count_attempt=True)
            for _, env, _ in runnable
        ]
        try:
            won = self.runtime.state.apply(claims)
        except Exception:
            consumer.release([d for d, _, _ in runnable])
            self.slots.give_back(len(runnable))
            raise
        held: set[int] = set()
        expired: list[Early] = []
        if not all(won):
            held, expired = self.early.sort_out(self.runtime.state, runnable, won, retried)
        started = [(env, task) for (_, env, task), ok in zip(runnable, won, strict=True) if ok]
        self.slots.give_back(len(runnable) - len(started) - len(held) + len(expired))
        now = time.time()
        limited = False
        jobs: list[Job] = []
        for envelope, task in started:
            running = Running(envelope, now)
            limits = task.options
            if limits.soft_time_limit:
                running.soft_deadline = now + limits.soft_time_limit
            if limits.hard_time_limit:
                running.hard_deadline = now + limits.hard_time_limit
            limited = limited or bool(limits.soft_time_limit or limits.hard_time_limit)
            self.in_hand[envelope.id] = running
            jobs.append(lambda e=envelope, t=task: self.executor.run(e, t))  # type: ignore[misc]
        # Acked now, in the same round: the acks go out while the tasks run.
        consumer.ack([d for i, (d, _, _) in enumerate(runnable) if i not in held])
        if limited:
            self.watchdog.poke()
        self.processed += len(started)
        recycle_after = self.app.settings.max_tasks_per_child
        if recycle_after and self.processed >= recycle_after:
            log.info("worker %s: recycling after %d tasks", self.id, self.processed)
            self.stop()
        duplicates = len(runnable) - len(started) - len(held)
        if duplicates:
            log.debug("dropped %d duplicate deliveries", duplicates)
        for early in expired:
            reason = (
                f"no invocation record {early.envelope.id} after {self.early.grace:g}s "
                "(its producer failed or died before writing it)"
            )
            self._reject(consumer, early.delivery, reason, None)
        return jobs

    def _reject(
        self, consumer: Consumer, delivery: Delivery, reason: str, envelope: Envelope | None
    ) -> None:
        log.error(
            "dead-lettering message %s: %s",
            delivery.message.invocation_id,
            reason,
            extra={"invocation_id": delivery.message.invocation_id},
        )
        consumer.dead_letter(delivery, reason)
        if envelope is not None:
            error = error_info(UnknownTaskError(reason))
            self.runtime.state.apply(
                [
                    Change(
                        envelope.id,
                        Status.FAILED,
                        CLAIMABLE,
                        by=self.id,
                        error=error,
                        note=f"dead-lettered: {reason}",
                    )
                ]
            )

    def resolve(self, envelope: Envelope) -> Task[Any, Any] | None:
        """The task a message names, importing its module on first sight if needed."""
        tasks = self.app.tasks
        task = tasks.get(envelope.task)
        if task is not None:
            return task
        candidates = [envelope.module] if envelope.module else []
        parts = envelope.task.split(".")
        candidates += [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        for module in candidates:
            try:
                importlib.import_module(module)
            except Exception:
                continue
            if envelope.task in tasks:
                return tasks[envelope.task]
        return None

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
            },
        )

    def beat(self, stopped: bool = False) -> None:
        try:
            self.runtime.state.beat([self.record(stopped)])
        except Exception:
            log.warning("worker %s: heartbeat write failed", self.id, exc_info=True)

    def _beat_loop(self) -> None:
        interval = self.app.settings.heartbeat_interval
        ceiling = self.app.settings.max_memory_per_child
        while not self._stop.wait(interval):
            self.beat()
            if ceiling and resident_mib() > ceiling:
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
        """Fail (or retry) an invocation past its hard limit and replace its slot."""
        running = self.in_hand.get(invocation_id)
        task = self.resolve(running.envelope) if running is not None else None
        if running is None or task is None:
            return
        running.cancelled = True
        limit = task.options.hard_time_limit
        exc = HardTimeLimitExceeded(f"{task.name} ran past its hard time limit of {limit}s")
        change = self.executor.failure(running.envelope, task, running.envelope.attempt + 1, exc)
        self.committer.put(change, running.envelope.reply_to)
        log.error(
            "%s: hard time limit of %ss exceeded",
            task.name,
            limit,
            extra={"invocation_id": invocation_id, "task": task.name},
        )
        if self.exit_on_hard_limit:
            self.committer.flush(timeout=10)
            self.beat()
            os._exit(EXIT_HARD_LIMIT)
        running.interrupt()


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
