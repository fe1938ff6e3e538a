"""Intake: turning deliveries into claimed runs, for one worker process.

Job: for `fleet.worker.process.WorkerProcess`, decode deliveries, refuse what may not
run (dead-lettered with the reason), claim the rest in the state store in one batch and
return the runs of the claims won; hold messages whose record is not written yet
(`fleet.worker._early`) and ack the others.

Contract (steps 2 and 3 of the process's contract): the caller takes one slot per
delivery handed to `claim`; `claim` appends the run of every claim won to `jobs` before
anything else can raise (giving back the other slots, the ack, holding early arrivals,
dead-lettering), so the caller hands them out whatever happens next. The extensions'
`before_claim` may hold some claims back: those are parked BLOCKED in the same batch of
compare-and-sets instead (`fleet.worker._holds`), their messages acked and their slots
given back; a refusal (`ExtensionError`) returns the deliveries to the broker. A claim whose
outcome is unknown (the store raised, maybe after applying it) is read back once the
store answers again. Nothing a message names is imported: tasks resolve from the app's
registry only, and a message in another codec than the setting `codec` is refused.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from fleet._envelope import Envelope, unpack
from fleet._exceptions import error_info
from fleet._transitions import apply
from fleet.broker import Consumer, Delivery
from fleet.errors import ExtensionError, FleetError, SerializationError, UnknownTaskError
from fleet.extensions import Hold
from fleet.signing import signer
from fleet.state import Change
from fleet.status import CLAIMABLE, Status
from fleet.worker import _holds
from fleet.worker._early import Early, EarlyArrivals
from fleet.worker.child import unknown_task
from fleet.worker.executor import Executor, Running
from fleet.worker.limits import Watchdog
from fleet.worker.slots import Slots

if TYPE_CHECKING:
    from fleet.app import Fleet, Runtime
    from fleet.task import Task

Job = Callable[[], None]
Runnable = tuple[Delivery, Envelope, "Task[Any, Any]"]

log = logging.getLogger(__name__)


class Intake:
    """Claims deliveries for the worker process `runner` (see the module docstring)."""

    def __init__(
        self,
        app: Fleet,
        runtime: Runtime,
        runner: str,
        *,
        slots: Slots,
        early: EarlyArrivals,
        in_hand: dict[str, Running],
        executor: Executor,
        watchdog: Watchdog,
        stopping: threading.Event,
        on_started: Callable[[int], None],
    ) -> None:
        self.app = app
        self.state = runtime.state
        self.id = runner
        self.slots = slots
        self.early = early
        self.in_hand = in_hand
        self.executor = executor
        self.watchdog = watchdog
        self.stopping = stopping
        self.on_started = on_started
        """Called with the number of claims won in each round (counting, recycling)."""

    def dispatch(self, consumer: Consumer, deliveries: list[Delivery], jobs: list[Job]) -> None:
        runnable: list[Runnable] = []
        check = signer(self.app.settings).check
        for delivery in deliveries:
            # Before a byte of the body is decoded: an unsigned or forged message is
            # untrusted input, set aside with the reason (its record, if any, untouched).
            untrusted = check(delivery.message.body, delivery.message.headers)
            if untrusted is not None:
                self.reject(consumer, delivery, untrusted, None)
                continue
            try:
                envelope = unpack(delivery.message.body)
            except SerializationError as exc:
                self.reject(consumer, delivery, str(exc), None)
                continue
            task = self.resolve(envelope)
            if task is None:
                refusal = self.refusal(envelope)
                self.reject(consumer, delivery, str(refusal), envelope, refusal)
                continue
            runnable.append((delivery, envelope, task))
        if runnable:
            self.slots.take(len(runnable))  # each keeps its slot until it runs or is dropped
            self.claim(consumer, runnable, jobs)

    def claim(
        self,
        consumer: Consumer,
        runnable: list[Runnable],
        jobs: list[Job],
        retried: list[Early] | None = None,
    ) -> None:
        """Claim deliveries whose slots are taken; add the runs of those won to `jobs`
        first, then give back the other slots, ack, drop the duplicates and hold those
        whose record is not there yet (`_early`)."""
        holds: dict[str, Hold] = {}
        at: float | None = None
        if self.app.dispatcher.before_claim_hooks:  # may park some BLOCKED instead
            at = time.time()
            try:
                holds = _holds.ask(self.app.dispatcher, self.id, runnable, at)
            except ExtensionError:
                self._refused(consumer, runnable)
                return
        claims = [
            Change(env.id, Status.RUNNING, CLAIMABLE, by=self.id, count_attempt=True)
            if env.id not in holds
            else _holds.park(holds[env.id], self.id)
            for _, env, _ in runnable
        ]
        try:
            tasks = [t.name for *_, t in runnable]
            won = apply(self.state, claims, self.app.dispatcher, tasks, at=at)
        except Exception:
            won = self._read_back(consumer, runnable)
        now = time.time()
        limited = False
        started = 0
        parked: list[Hold] = []
        for (delivery, envelope, task), ok in zip(runnable, won, strict=True):
            if ok and envelope.id in holds:
                parked.append(holds[envelope.id])  # acked below, its slot given back
            elif ok:
                headers = delivery.message.headers
                limited = self._take_in_hand(envelope, task, now, headers) or limited
                jobs.append(partial(self.executor.run, envelope, task))
                started += 1
        # The jobs are handed out whatever happens from here on (see `_consume`).
        self.slots.give_back(len(runnable) - started)
        if limited:
            self.watchdog.poke()
        held: set[int] = set()
        dropped: list[tuple[Early, str]] = []
        if started < len(runnable):
            held, dropped = self.early.sort_out(self.state, runnable, won, retried)
        # Acked now, in the same round: the acks go out while the tasks run.
        consumer.ack([d for i, (d, _, _) in enumerate(runnable) if i not in held])
        self.on_started(started)
        duplicates = len(runnable) - started - len(held)
        if duplicates:
            log.debug("dropped %d duplicate deliveries", duplicates)
        for early, reason in dropped:
            self.reject(consumer, early.delivery, reason, None)
        if parked:
            _holds.follow_up(self.app, parked)

    def _refused(self, consumer: Consumer, runnable: list[Runnable]) -> None:
        """An extension refused the claims (`before_claim` raised): run none of them;
        give their deliveries back to the broker after a pause (the policy's store may
        be down), as a failing state store is waited out."""
        log.error(
            "worker %s: an extension refused %d claim(s); returned to the queue",
            self.id,
            len(runnable),
            exc_info=True,
            extra={"invocation_id": runnable[0][1].id, "task": runnable[0][1].task},
        )
        self.slots.give_back(len(runnable))
        self._pause(consumer, 1.0)
        consumer.release([d for d, _, _ in runnable])

    def _take_in_hand(
        self,
        envelope: Envelope,
        task: Task[Any, Any],
        now: float,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Count a claimed invocation in hand; True if it has a time limit."""
        running = Running(envelope, now)
        if headers:
            running.headers = headers
        limits = task.options
        if limits.soft_time_limit:
            running.soft_deadline = now + limits.soft_time_limit
        if limits.hard_time_limit:
            running.hard_deadline = now + limits.hard_time_limit
        self.in_hand[envelope.id] = running
        return bool(limits.soft_time_limit or limits.hard_time_limit)

    def _read_back(self, consumer: Consumer, runnable: list[Runnable]) -> list[bool]:
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
                records = self.state.get(ids)
                break
            except Exception:
                if self.stopping.is_set():
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
        while not self.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                consumer.receive(0, timeout=left)
            except Exception:
                self.stopping.wait(left)

    def reject(
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
            apply(self.state, [failed], self.app.dispatcher, envelope.task)
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
