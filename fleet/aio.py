"""The asyncio API for producer services (FastAPI and the like).

    invocation = await resize.acall(42, width=800)     # Task: submitted, not waited
    url = await invocation.aresult(timeout=30)
    report = await generate_report.acall("Q1-2025")   # DirectTask: the value
    urls = await resize.parallelize(items).aresults()

Job: submit invocations and await their results without ever blocking the event loop.

Contract:
- Nothing here blocks the loop: state-store calls (SQLite, pymongo) and anything else
  synchronous run in a thread (`asyncio.to_thread`).
- With a RabbitMQ broker (`amqp://`, `amqps://`), each event loop gets its own aio-pika
  robust connection: messages are published on it with publisher confirms (persistent,
  mandatory, URGENT to the urgent lane, retried like the sync publisher: each of
  `publish_retries` attempts waits up to `publish_timeout` for the connection, then
  `PublishError`, and the invocations are marked FAILED), and results come back as
  notifications to an exclusive queue of its own, consumed by aio-pika. Invocations
  submitted that way are awaited on futures; while any waits longer than a second the
  state store is read (in a thread) every second as a fallback, because
  notifications are best effort.
- A call the extensions reuse (`fleet._screen`) gets a handle on the existing
  invocation; its outcome is notified to the process that submitted it, so here it
  comes from the state-store fallback (within a second).
- With any other broker, and in inline mode, the sync path runs in a thread: the same
  values, the same exceptions, the loop stays free.
- `aclose(app)` closes the async connection of the running loop (call it on shutdown,
  e.g. in a FastAPI lifespan handler).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleet import _followup, _prepare, _records, _screen, _values
from fleet._envelope import Outcome, unpack_notes
from fleet._timeouts import result_timeout
from fleet._urls import scheme_of
from fleet._waiter import outcome_of
from fleet.broker import URGENT, Message
from fleet.errors import BrokerError, PublishError
from fleet.invocation import Group, InlineInvocation, Invocation
from fleet.status import Status

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.broker.rabbitmq import RabbitMQBroker
    from fleet.task import Task

log = logging.getLogger(__name__)
POLL = 1.0
"""Seconds a waiter trusts notifications before it also reads the state store."""
_runtimes: weakref.WeakKeyDictionary[Fleet, dict[asyncio.AbstractEventLoop, _AsyncRuntime]] = (
    weakref.WeakKeyDictionary()
)


def _uses_rabbitmq(app: Fleet) -> bool:
    return not app.settings.inline and scheme_of(app.settings.broker_url) in ("amqp", "amqps")


async def submit(
    app: Fleet,
    task: Task[Any, Any],
    bounds: Sequence[inspect.BoundArguments],
    keys: Sequence[str] = (),
) -> list[Invocation[Any]]:
    """Register and publish invocations (the async `Fleet.submit`)."""
    if not _uses_rabbitmq(app):
        return await asyncio.to_thread(app.submit, task, bounds, None, None, keys)
    runtime = await _runtime(app)
    return await runtime.submit(task, bounds, keys)


async def results(
    app: Fleet, invocations: Sequence[Invocation[Any]], timeout: float | None = None
) -> list[Any]:
    """Every value, in order; the first failure raises (like `Group.results`)."""
    if not invocations:
        return []
    runtime = _runtimes.get(app, {}).get(asyncio.get_running_loop())
    remote = [i.id for i in invocations if not isinstance(i, InlineInvocation)]
    if remote and (runtime is None or not all(map(runtime.knows, remote))):
        # Submitted through the sync API: its notifications go to the sync waiter.
        return await asyncio.to_thread(Group(list(invocations)).results, timeout)
    try:
        outcomes = await runtime.wait(remote, timeout) if runtime and remote else {}
    except TimeoutError:
        state, broker = app.runtime().state, app.runtime().broker
        raise await asyncio.to_thread(result_timeout, state, broker, remote, timeout) from None
    values = []
    for invocation in invocations:
        if isinstance(invocation, InlineInvocation):
            values.append(invocation.result())
            continue
        outcome = outcomes[invocation.id]
        if _plain(outcome):
            values.append(app.unwrap(invocation.task, outcome))
        else:  # the value lives in the state store
            values.append(await asyncio.to_thread(_unwrap_stored, app, invocation.task, outcome))
    return values


def _plain(outcome: Outcome) -> bool:
    """Whether unwrapping needs no I/O (the value came whole in the notification)."""
    if not outcome.complete:
        return False
    return outcome.status is not Status.SUCCESS or not _values.is_reference(outcome.result or b"")


def _unwrap_stored(app: Fleet, task: str, outcome: Outcome) -> Any:
    if not outcome.complete:
        found = outcome_of(app.record(outcome.id))
        outcome = found if found is not None else outcome
    return app.unwrap(task, outcome)


async def aclose(app: Fleet) -> None:
    """Close the async connection of `app` on the running loop (if any)."""
    runtime = _runtimes.get(app, {}).pop(asyncio.get_running_loop(), None)
    if runtime is not None:
        await runtime.close()


async def _runtime(app: Fleet) -> _AsyncRuntime:
    loop = asyncio.get_running_loop()
    per_loop = _runtimes.setdefault(app, {})
    runtime = per_loop.get(loop)
    if runtime is None or runtime.pid != os.getpid():
        runtime = per_loop[loop] = _AsyncRuntime(app)
    await runtime.start()
    return runtime


class _AsyncRuntime:
    """One event loop's aio-pika connection, publisher and result listener."""

    def __init__(self, app: Fleet) -> None:
        from fleet.broker._amqp_local import address

        self.app = app
        self.pid = os.getpid()
        self.address = address()
        self._broker: RabbitMQBroker | None = None
        self._started: asyncio.Task[None] | None = None
        self._outcomes: dict[str, Outcome] = {}
        self._futures: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._known: weakref.WeakValueDictionary[str, Invocation[Any]] = (
            weakref.WeakValueDictionary()
        )
        self.connection: Any = None
        self.channel: Any = None

    def knows(self, invocation_id: str) -> bool:
        return invocation_id in self._known

    async def start(self) -> None:
        """Connect on first use; callers arriving meanwhile share the attempt, and the
        next call after a failed one tries again."""
        started = self._started
        if started is None or (started.done() and started.exception() is not None):
            started = self._started = asyncio.ensure_future(self._connect())
        await asyncio.shield(started)

    async def _connect(self) -> None:
        from fleet.broker.rabbitmq import RabbitMQBroker

        runtime = await asyncio.to_thread(self.app.runtime)
        broker = runtime.broker
        assert isinstance(broker, RabbitMQBroker)
        self._broker = broker
        try:
            await self._open(broker)
        except Exception as exc:
            if self.connection is not None:
                await self.connection.close()
                self.connection = None
            raise BrokerError(
                f"cannot open the async connection to {broker.url}: "
                + broker.endpoint.scrub(f"{type(exc).__name__}: {exc}")
            ) from None

    async def _open(self, broker: RabbitMQBroker) -> None:
        import aio_pika

        params = broker.endpoint.params
        context = params.ssl_options.context if params.ssl_options else None
        hosts = broker.endpoint.candidates()
        for index, (host, port) in enumerate(hosts):
            try:
                self.connection = await self._connect_to(broker, host, port, context)
                break
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError):
                # A cluster: the next node (aio-pika's robust reconnect stays on this one).
                broker.endpoint.failed((host, port))
                if index == len(hosts) - 1:
                    raise
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await self.channel.declare_queue(self.address, exclusive=True, auto_delete=True)
        await queue.consume(self._on_reply, no_ack=True)

    async def _connect_to(self, broker: RabbitMQBroker, host: str, port: int, context: Any) -> Any:
        import aio_pika

        params = broker.endpoint.params
        return await aio_pika.connect_robust(
            host=host,
            port=port,
            login=params.credentials.username,
            password=params.credentials.password,
            virtualhost=params.virtual_host,
            ssl=context is not None,
            ssl_context=context,
            timeout=broker.options.connect_timeout,
            heartbeat=params.heartbeat,
            reconnect_interval=1,
            client_properties={"connection_name": f"fleet aio pid {os.getpid()}"},
        )

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        for futures in self._futures.values():
            for future in futures:
                future.cancel()

    # -- submitting ---------------------------------------------------------------------

    async def submit(
        self,
        task: Task[Any, Any],
        bounds: Sequence[inspect.BoundArguments],
        keys: Sequence[str] = (),
    ) -> list[Invocation[Any]]:
        messages, ids = await asyncio.to_thread(self._register, task, bounds, keys)
        handles: list[Invocation[Any]] = [Invocation(self.app, i, task.name) for i in ids]
        for handle in handles:
            self._known[handle.id] = handle
            weakref.finalize(handle, self._outcomes.pop, handle.id, None)
        if not messages:  # every call reused an existing invocation
            return handles
        try:
            await self.publish(messages)
        except PublishError as exc:
            ids = [m.invocation_id for m in messages]
            state, dispatcher = self.app.runtime().state, self.app.dispatcher
            await asyncio.to_thread(
                _records.mark_unpublished, state, ids, exc, dispatcher, task.name
            )
            raise
        _followup.of(self.app).published(messages)  # clears their recovery deadline
        return handles

    def _register(
        self, task: Task[Any, Any], bounds: Sequence[inspect.BoundArguments], keys: Sequence[str]
    ) -> tuple[list[Message], list[str]]:
        """Register the calls (those the extensions do not reuse): their messages, and
        per call the id its handle follows (`fleet._screen`)."""
        runtime = self.app.runtime()
        prepared = _prepare.prepare(self.app, runtime, task, bounds, reply_to=self.address)
        handles = prepared.ids
        if self.app.dispatcher.before_publish_hooks:
            prepared, handles = _screen.screen(self.app.dispatcher, task, prepared, keys)
        if prepared.ids:
            runtime.declare([prepared.queue])
            _records.register(runtime.state, prepared.records(), self.app.dispatcher)
        return prepared.messages, handles

    async def publish(self, messages: Sequence[Message]) -> None:
        import aio_pika

        broker = self._broker
        assert broker is not None
        options = broker.options
        queues = sorted({m.queue for m in messages})
        infos = await asyncio.to_thread(broker.admin.ensure, queues)
        todo = list(messages)
        reasons: list[str] = []
        for attempt in range(1, options.publish_retries + 1):
            try:
                await asyncio.wait_for(self.channel.ready(), options.publish_timeout)
            except Exception as exc:  # timeout, or the connection is gone
                reasons = [f"no connection to {broker.url}: {broker.endpoint.scrub(repr(exc))}"]
                outcome: list[BaseException | None] = [exc] * len(todo)
            else:
                sends = []
                for m in todo:
                    key = m.queue
                    if m.priority >= URGENT and infos[key].urgent:
                        key = f"{key}.urgent"
                    amqp = aio_pika.Message(
                        bytes(m.body),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=broker.publisher.message_id(),
                        correlation_id=m.invocation_id,
                        headers=dict(m.headers) or None,
                        priority=m.priority if 0 < m.priority < 256 else None,
                    )
                    sends.append(
                        self.channel.default_exchange.publish(
                            amqp, key, mandatory=True, timeout=options.publish_timeout
                        )
                    )
                outcome = await asyncio.gather(*sends, return_exceptions=True)
            failed = [
                (m, e) for m, e in zip(todo, outcome, strict=True) if isinstance(e, BaseException)
            ]
            if not failed:
                return
            todo = [m for m, _ in failed]
            reasons = sorted({broker.endpoint.scrub(f"{type(e).__name__}: {e}") for _, e in failed})
            if attempt < options.publish_retries:
                log.warning(
                    "async publish attempt %d: %d not confirmed (%s)",
                    attempt,
                    len(todo),
                    reasons[0],
                )
                await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
        raise PublishError(
            f"publish to queue(s) {queues} on {broker.url}: {len(todo)} of {len(messages)} "
            f"message(s) not confirmed after {options.publish_retries} attempt(s): "
            + "; ".join(reasons)
        )

    # -- results ------------------------------------------------------------------------

    async def _on_reply(self, message: Any) -> None:
        for note in unpack_notes(message.body):
            if isinstance(note, Outcome):
                self._store(note)

    def _store(self, outcome: Outcome) -> None:
        for future in self._futures.pop(outcome.id, ()):
            if not future.done():
                future.set_result(outcome)
        if outcome.id in self._known:
            self._outcomes[outcome.id] = outcome

    async def wait(self, ids: Sequence[str], timeout: float | None) -> dict[str, Outcome]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        futures: dict[str, asyncio.Future[Outcome]] = {}
        for i in ids:
            future: asyncio.Future[Outcome] = loop.create_future()
            if i in self._outcomes:
                future.set_result(self._outcomes[i])
            else:
                self._futures.setdefault(i, []).append(future)
            futures[i] = future
        try:
            while True:
                pending = [f for f in futures.values() if not f.done()]
                if not pending:
                    return {i: f.result() for i, f in futures.items()}
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    missing = [i for i, f in futures.items() if not f.done()]
                    raise TimeoutError(
                        f"{len(missing)} of {len(ids)} invocation(s) not finished after "
                        f"{timeout}s: {', '.join(missing[:5])}"
                    )
                await asyncio.wait(pending, timeout=POLL if left is None else min(POLL, left))
                missing = [i for i, f in futures.items() if not f.done()]
                if missing:  # notifications are best effort: ask the state store too
                    records = await asyncio.to_thread(self.app.runtime().state.get, missing)
                    for found in filter(None, map(outcome_of, records)):
                        self._store(found)
                        if not futures[found.id].done():
                            futures[found.id].set_result(found)
        finally:
            for i, future in futures.items():
                waiting = self._futures.get(i)
                if waiting and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self._futures[i]
                future.cancel()
