"""One worker process: receive, claim, ack, run on slots, commit, beat.

Job: turn messages into finished invocations, as many at a time as it has slots.

Contract (the hot path, see ARCHITECTURE.md):
1. Receive at most as many messages as there are free slots (urgent first).
2. Dead-letter what cannot run (undecodable body, a task not in the app's registry, a
   codec other than the setting `codec`) with the reason; the invocation, if there is
   one, is marked FAILED; the loop goes on. Nothing a message names is imported.
3. Claim the rest in the state store in one batch (PENDING -> RUNNING, owner = this
   process), hand those won to their threads, then ack them all. The thread that
   received them runs the last one itself (`fleet.worker.baton`: no hand-off for a
   lone message; another thread takes over the consumer if it runs long). Nothing
   claimed is dropped: the runs of the claims won are collected before anything else
   can raise (giving back slots, the ack, holding early arrivals, dead-lettering) and
   handed out even when one of those raises. A claim whose outcome is unknown (the
   store raised, maybe after applying it) is read back once the store answers again:
   RUNNING under this process means it runs; otherwise it is sorted out like a lost
   claim. A lost claim whose record exists is a duplicate delivery: acked and dropped.
   One whose record does not exist yet (its producer writes it while the broker
   confirms, see `fleet.app`) is held unacked without a slot and claimed again (on a
   slot taken then) after 1 ms, 2 ms, ... (at most 0.1 s apart); for its first 0.1 s
   it holds back new receives as its slot would. At most `prefetch()` are held (one
   more pushes out the oldest) and each at most `RECORD_GRACE` seconds; then it is
   dead-lettered with the reason (`fleet.worker._early`), so a flood of messages
   without records cannot starve real work. A message is thus acked as its task
   starts, never held unacknowledged while it runs; an invocation whose owner dies is
   found RUNNING under a dead owner and requeued by recovery, and one its live owner
   does not hold (not in its heartbeat) is requeued by the leader as well
   (`fleet.worker.recovery.recover_unheld`).
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
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from fleet._envelope import Envelope, unpack
from fleet._exceptions import error_info
from fleet._transitions import apply
from fleet.broker import Consumer, Delivery
from fleet.errors import (
    FleetError,
    HardTimeLimitExceeded,
    SerializationError,
    UnknownTaskError,
)
from fleet.state import Change, RunnerRecord
from fleet.status import CLAIMABLE, Status
from fleet.worker import recovery
from fleet.worker._early import Early, EarlyArrivals
from fleet.worker.baton import Baton
from fleet.worker.child import import_task_modules, unknown_task
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
        import_task_modules(app)  # before anything is received: tasks resolve by registry
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
        self.beat(stopped=not left)
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
                    self._claim(consumer, again, jobs, due)
                    continue
                timeout = 1.0
                if early and free:
                    timeout = min(timeout, early.wait(now) or 0.0)
                room = max(0, free - early.blocking(now)) if early else free
                deliveries = consumer.receive(room, timeout=timeout)
                if deliveries:
                    self._dispatch(consumer, deliveries, jobs)
        except BaseException:
            for job in jobs:
                self.pool.submit(job)
            raise
        if not jobs:
            return None
        for job in jobs[:-1]:
            self.pool.submit(job)
        return jobs[-1]

    def prefetch(self) -> int:
        """Messages this process may hold undelivered: the largest `prefetch` of its
        queues (at least one per slot), else two per slot (so that acks can be sent in
        batches of one per slot while as many messages wait for the slots)."""
        configured = max(self.app.queues.get(q).prefetch for q in self.queues)
        return max(self.threads, configured) if configured else 2 * self.threads

    def _dispatch(self, consumer: Consumer, deliveries: list[Delivery], jobs: list[Job]) -> None:
        runnable: list[tuple[Delivery, Envelope, Task[Any, Any]]] = []
        for delivery in deliveries:
            try:
                envelope = unpack(delivery.message.body)
            except SerializationError as exc:
                self._reject(consumer, delivery, str(exc), None)
                continue
            task = self.resolve(envelope)
            if task is None:
                refusal = self.refusal(envelope)
                self._reject(consumer, delivery, str(refusal), envelope, refusal)
                continue
            runnable.append((delivery, envelope, task))
        if runnable:
            self.slots.take(len(runnable))  # each keeps its slot until it runs or is dropped
            self._claim(consumer, runnable, jobs)

    def _claim(
        self,
        consumer: Consumer,
        runnable: list[tuple[Delivery, Envelope, Task[Any, Any]]],
        jobs: list[Job],
        retried: list[Early] | None = None,
    ) -> None:
        """Claim deliveries whose slots are taken; add the runs of those won to `jobs`
        first, then give back the other slots, ack, drop the duplicates and hold those
        whose record is not there yet (`_early`)."""
        claims = [
            Change(env.id, Status.RUNNING, CLAIMABLE, by=self.id, count_attempt=True)
            for _, env, _ in runnable
        ]
        try:
            won = apply(
                self.runtime.state, claims, self.app.dispatcher, [t.name for *_, t in runnable]
            )
        except Exception:
            won = self._read_back(consumer, runnable)
        now = time.time()
        limited = False
        started = 0
        for (_, envelope, task), ok in zip(runnable, won, strict=True):
            if ok:
                limited = self._take_in_hand(envelope, task, now) or limited
                jobs.append(partial(self.executor.run, envelope, task))
                started += 1
        # The jobs are handed out whatever happens from here on (see `_consume`).
        self.slots.give_back(len(runnable) - started)
        self.processed += started
        if limited:
            self.watchdog.poke()
        held: set[int] = set()
        dropped: list[tuple[Early, str]] = []
        if started < len(runnable):
            held, dropped = self.early.sort_out(self.runtime.state, runnable, won, retried)
        # Acked now, in the same round: the acks go out while the tasks run.
        consumer.ack([d for i, (d, _, _) in enumerate(runnable) if i not in held])
        recycle_after = self.app.settings.max_tasks_per_child
        if recycle_after and self.processed >= recycle_after:
            log.info("worker %s: recycling after %d tasks", self.id, self.processed)
            self.stop()
        duplicates = len(runnable) - started - len(held)
        if duplicates:
            log.debug("dropped %d duplicate deliveries", duplicates)
        for early, reason in dropped:
            self._reject(consumer, early.delivery, reason, None)

    def _take_in_hand(self, envelope: Envelope, task: Task[Any, Any], now: float) -> bool:
        """Count a claimed invocation in hand; True if it has a time limit."""
        running = Running(envelope, now)
        limits = task.options
        if limits.soft_time_limit:
            running.soft_deadline = now + limits.soft_time_limit
        if limits.hard_time_limit:
            running.hard_deadline = now + limits.hard_time_limit
        self.in_hand[envelope.id] = running
        return bool(limits.soft_time_limit or limits.hard_time_limit)

    def _read_back(
        self, consumer: Consumer, runnable: list[tuple[Delivery, Envelope, Task[Any, Any]]]
    ) -> list[bool]:
        """The claims failed with an error, after which they may have been applied or
        not: wait until the store answers (keeping the consumer's connection alive), read
        the records back and report as won those RUNNING under this process and not in
        hand already. Stopping before the store answers, it releases the deliveries and
        their slots and raises: what it may have claimed is requeued after its stop."""
        ids = [env.id for _, env, _ in runnable]
        log.warning(
            "worker %s: state store failed claiming %d invocation(s); reading them back",
            self.id,
            len(ids),
            exc_info=True,
        )
        delay = 0.1
        while True:
            try:
                records = self.runtime.state.get(ids)
                break
            except Exception:
                if self._stop.is_set():
                    self.slots.give_back(len(runnable))
                    consumer.release([d for d, _, _ in runnable])
                    raise
                log.warning("worker %s: state store still failing", self.id, exc_info=True)
                self._pause(consumer, delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)
        mine = {r.id for r in records if r.status is Status.RUNNING and r.owner == self.id}
        won = []
        for invocation_id in ids:
            won.append(invocation_id in mine and invocation_id not in self.in_hand)
            mine.discard(invocation_id)  # a second delivery in the same batch: a duplicate
        return won

    def _pause(self, consumer: Consumer, seconds: float) -> None:
        """Wait `seconds` (less when stopping) while the consumer keeps its connection."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                consumer.receive(0, timeout=left)
            except Exception:
                self._stop.wait(left)

    def _reject(
        self,
        consumer: Consumer,
        delivery: Delivery,
        reason: str,
        envelope: Envelope | None,
        error: BaseException | None = None,
    ) -> None:
        log.error(
            "dead-lettering message %s: %s",
            delivery.message.invocation_id,
            reason,
            extra={"invocation_id": delivery.message.invocation_id},
        )
        consumer.dead_letter(delivery, reason)
        if envelope is None:
            return
        info = error_info(error or UnknownTaskError(reason))
        failed = Change(
            envelope.id,
            Status.FAILED,
            CLAIMABLE,
            by=self.id,
            error=info,
            note=f"dead-lettered: {reason}",
        )
        try:
            apply(self.runtime.state, [failed], self.app.dispatcher, envelope.task)
        except Exception:  # the message is gone: recovery publishes the PENDING record again
            log.warning(
                "marking %s FAILED failed; it stays PENDING until recovery publishes it again",
                envelope.id,
                exc_info=True,
                extra={"invocation_id": envelope.id, "task": envelope.task},
            )

    def resolve(self, envelope: Envelope) -> Task[Any, Any] | None:
        """The registered task a message names, if this worker may run the message.

        Only the app's registry counts (the app's module and the setting
        `task_modules`, imported at start): a module a message names is never imported
        here, or anyone who can publish to a queue could make workers import any
        installed module. A message in another codec than the setting `codec` is not
        run either: the codec is this app's choice, never the message's.
        """
        if envelope.codec != self.app.codec.name:
            return None
        return self.app.tasks.get(envelope.task)

    def refusal(self, envelope: Envelope) -> FleetError:
        """Why `resolve` found nothing: the error for the dead-letter reason and the
        invocation, chained to the import error of the task's module if there is one."""
        codec = self.app.codec.name
        if envelope.codec != codec:
            return SerializationError(
                f"message {envelope.id} is encoded with codec {envelope.codec!r}, but this "
                f"worker's setting `codec` is {codec!r}"
            )
        return unknown_task(envelope.task, envelope.module)

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
        """Fail (or retry) an invocation past its hard limit and free its slot.

        Runs on a thread of its own (`Watchdog`). In a process of `fleet worker`
        (`exit_on_hard_limit`), its thread may be stuck where no exception reaches it, so
        the process is replaced without charging the other invocations it runs: it stops
        taking work, lets them finish within `shutdown_grace` (whatever is left is
        requeued with its attempt given back), and exits with `EXIT_HARD_LIMIT`
        (`child_main`); the supervisor starts a new one at once.
        """
        running = self.in_hand.get(invocation_id)
        task = self.resolve(running.envelope) if running is not None else None
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
            if self.exit_on_hard_limit
            else "",
            extra={"invocation_id": invocation_id, "task": task.name},
        )
        if self.exit_on_hard_limit:
            self.hung.add(invocation_id)
            self.stop()  # first: take no new work even if the commit below waits
        exc = HardTimeLimitExceeded(f"{task.name} ran past its hard time limit of {limit}s")
        change = self.executor.failure(running.envelope, task, running.envelope.attempt + 1, exc)
        self.committer.put(change, running.envelope.reply_to, task.name)
        running.interrupt()  # reaches the thread if it ever runs Python code again
        self._task_done()  # the drain may be waiting only for this one


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
