"""Publishing in the background: a call returns once its record is durable.

Job: for one process and app (one per `Runtime`), take the messages of invocations
whose records are already written (`put`) and publish them from one thread, with
publisher confirms, in batches: every message handed over while the previous batch
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
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleet import _followup, _records
from fleet._waiter import outcome_of
from fleet.broker import Message
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
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fleet-publish", daemon=True)
        self._thread.start()

    def put(self, messages: Sequence[Message], task: str) -> None:
        """Publish `messages` (of invocations of `task`, already registered) soon."""
        with self._cond:
            if self._closed:
                raise RuntimeError("publishing pipeline closed")
            self._todo.extend((m, task) for m in messages)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything handed over is settled; False if `timeout` passed."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._todo and not self._busy, timeout)

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
                self._cond.wait_for(lambda: self._todo or self._closed)
                if not self._todo:
                    return
                batch, self._todo = self._todo, []
                self._busy = True
            try:
                self._publish(batch)
            except Exception:  # never let the thread die: the records stay recoverable
                log.exception("publishing pipeline: %d message(s) left to recovery", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _publish(self, batch: list[tuple[Message, str]]) -> None:
        by_queue: dict[str, list[tuple[Message, str]]] = defaultdict(list)
        for entry in batch:
            by_queue[entry[0].queue].append(entry)
        runtime = self._runtime
        app = self._app()
        for entries in by_queue.values():
            messages = [m for m, _ in entries]
            try:
                runtime.broker.publish(messages)
            except PublishError as exc:
                self._failed(entries, exc)
                continue
            if app is not None:
                _followup.of(app).published(messages)

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
