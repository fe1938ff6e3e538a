"""Publishing in the background: a call returns once its record is durable.

Job: for one process and app (one per `Runtime`), take the messages of invocations
whose records are already written (`put`) and publish them with publisher confirms,
awaited by one thread, in batches: every message handed over while the previous batch
waited for its confirms goes out in the next one. Callers never wait for RabbitMQ.

Contract (setting `publish_confirm = "background"`, brokers that send at once):
- Where the guarantee comes from: `put` is called only after `StateStore.register`
  returned, so the invocation is durable as PENDING with `due = now + pending_timeout`
  before the call returns. Then, whichever comes first:
  - the broker confirms: `fleet._followup` clears the deadline (the invocation is now
    safe in the queue), unless its outcome reaches this process within a short grace;
  - the publish fails for good (`PublishError` after `publish_retries` attempts): the
    invocation goes PENDING -> FAILED with that error (a compare-and-set: a copy a
    worker already claimed runs), and the outcome is delivered to this process's
    waiter, so the handle's `result()` raises at once;
  - the process dies (SIGKILL, power loss) before either: the record keeps its
    deadline, and the leader's recovery publishes it when it passes
    (`fleet.worker.recovery`). A call that returned is never lost.
- Sent from the caller's thread when nothing is ahead: a `put` that finds the thread
  idle (nothing queued, nothing sending or awaiting confirms) puts its messages on the
  socket itself (`Broker.begin_publish_now`) and hands the thread only the wait for
  their confirms, so a lone call's message leaves without a thread hand-off. That
  send never waits on RabbitMQ: when it would have to (no fresh idle connection, a
  queue not looked up yet) it sends nothing, and the messages are queued as below.
  Every other `put` queues its messages for the thread's next batch, which goes out
  after the confirms of what is ahead of it: a thread's calls leave in the order it
  made them. If the send raises, its messages are queued for the thread all the same
  (an interrupt such as `KeyboardInterrupt` is raised again once they are).
- `flush(timeout)` returns once everything handed over was settled (confirmed or
  failed). `close` flushes (`Runtime.close`, and at interpreter exit: this module
  registers its exit hook after `fleet._followup`'s, so it runs first and the
  confirms it collects still clear their deadlines).
- Messages to different queues are published separately, so that one queue refusing
  (full, deleted) fails only its own invocations.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from fleet import _followup, _records
from fleet._waiter import outcome_of
from fleet.broker import Message, Publishing
from fleet.errors import PublishError

if TYPE_CHECKING:
    from fleet.app import Fleet, Runtime

log = logging.getLogger(__name__)
_lock = threading.Lock()
_by_runtime: weakref.WeakKeyDictionary[Runtime, Pipeline] = weakref.WeakKeyDictionary()


def of(app: Fleet, runtime: Runtime) -> Pipeline:
    """The pipeline of `app` in this process (started on first use)."""
    with _lock:
        pipeline = _by_runtime.get(runtime)
        if pipeline is None:
            pipeline = _by_runtime[runtime] = Pipeline(app, runtime)
    return pipeline


def close(runtime: Runtime) -> None:
    """Flush and stop the pipeline of `runtime`, if it has one (`Runtime.close`)."""
    with _lock:
        pipeline = _by_runtime.pop(runtime, None)
    if pipeline is not None:
        pipeline.close()


@atexit.register
def _flush_all() -> None:
    with _lock:
        pipelines = list(_by_runtime.values())
    for pipeline in pipelines:
        if pipeline.pid == os.getpid():
            pipeline.close()


class Pipeline:
    """One thread publishing what callers hand over; see the module docstring."""

    def __init__(self, app: Fleet, runtime: Runtime) -> None:
        self._app = weakref.ref(app)
        self._runtime = runtime
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._todo: list[tuple[Message, str]] = []
        self._begun: list[tuple[Publishing, list[tuple[Message, str]]]] = []
        self._sending = 0
        """Sends begun on a caller's thread and not yet settled."""
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fleet-publish", daemon=True)
        self._thread.start()

    def put(self, messages: Sequence[Message], task: str) -> None:
        """Publish `messages` (of invocations of `task`, already registered) soon."""
        entries = [(m, task) for m in messages]
        with self._cond:
            if self._closed:
                raise RuntimeError("publishing pipeline closed")
            if self._todo or self._busy or self._sending:
                self._todo.extend(entries)
                self._cond.notify_all()
                return
            self._sending += 1  # nothing ahead: this thread sends, the pipeline waits
        publishing: Publishing | None = None
        try:
            publishing = self._runtime.broker.begin_publish_now(messages)
        except Exception:
            log.warning(
                "publishing pipeline: sending on the caller's thread failed; queued",
                exc_info=True,
            )
        finally:  # an interrupt is raised once the messages are the thread's
            with self._cond:
                if publishing is None:
                    self._sending -= 1
                    self._todo.extend(entries)
                else:
                    self._begun.append((publishing, entries))
                self._cond.notify_all()

    def _settled(self) -> bool:
        return not self._todo and not self._busy and not self._sending

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything handed over is settled; False if `timeout` passed."""
        with self._cond:
            return self._cond.wait_for(self._settled, timeout)

    def close(self, timeout: float = 60.0) -> None:
        if not self.flush(timeout):
            log.warning(
                "publishing pipeline: unconfirmed messages left at close; recovery "
                "publishes their invocations after pending_timeout"
            )
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._begun or self._todo or self._closed)
                begun, self._begun = self._begun, []
                if not begun and not self._todo:
                    return
                if begun:  # what callers sent goes first: their confirms, then the batch
                    batch: list[tuple[Message, str]] = []
                else:
                    batch, self._todo = self._todo, []
                self._busy = True
            try:
                for publishing, entries in begun:
                    self._settle(entries, publishing.wait)
                if batch:
                    self._publish(batch)
            except Exception:  # never let the thread die: the records stay recoverable
                left = len(batch) + sum(len(entries) for _, entries in begun)
                log.exception("publishing pipeline: %d message(s) left to recovery", left)
            finally:
                with self._cond:
                    self._busy = False
                    self._sending -= len(begun)
                    self._cond.notify_all()

    def _publish(self, batch: list[tuple[Message, str]]) -> None:
        by_queue: dict[str, list[tuple[Message, str]]] = defaultdict(list)
        for entry in batch:
            by_queue[entry[0].queue].append(entry)
        broker = self._runtime.broker
        for entries in by_queue.values():
            self._settle(entries, partial(broker.publish, [m for m, _ in entries]))

    def _settle(self, entries: list[tuple[Message, str]], confirm: Callable[[], None]) -> None:
        """Wait for `confirm` (it returns once the messages of `entries` are confirmed);
        then follow their invocations up, or fail them."""
        try:
            confirm()
        except PublishError as exc:
            self._failed(entries, exc)
            return
        app = self._app()
        if app is not None:
            _followup.of(app).published([m for m, _ in entries])

    def _failed(self, entries: list[tuple[Message, str]], exc: PublishError) -> None:
        """Fail the invocations (PENDING -> FAILED) and wake whoever waits on them."""
        app = self._app()
        by_task: dict[str, list[str]] = defaultdict(list)
        for message, task in entries:
            by_task[task].append(message.invocation_id)
        log.warning("publish failed for %d invocation(s): %s", len(entries), exc)
        state = self._runtime.state
        for task, ids in by_task.items():
            dispatcher = app.dispatcher if app is not None else None
            _records.mark_unpublished(state, ids, exc, dispatcher, task)
            outcomes = [outcome_of(r) for r in state.get(ids)]
            self._runtime.waiter.deliver(o for o in outcomes if o is not None)
