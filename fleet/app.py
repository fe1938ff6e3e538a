"""The `Fleet` app: settings, the task registry, and the producer side of the hot path.

Job: turn decorated functions into tasks, and a call of a task into a registered,
published invocation (or, in inline mode, a call run in this thread by
`fleet._inline`). `Fleet` is the facade tasks and handles see (`fleet._client.Client`):
waiting and cancelling live in `fleet._results`, connections in `fleet._runtime`, the
asyncio API in `fleet.aio`, failure bookkeeping of a submit in `fleet._records`,
triggers (`app.triggers`, `app.emit`) in the built-in extension `fleet.triggers`.

Contract: the submit path (encode, screen, register, publish, confirm) is in
`fleet._submit`, which states its guarantees; this module keeps the facade thin.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from fleet import (
    _context,
    _decorate,
    _prepare,
    _results,
    _submit,
    aio,
)
from fleet._client import Client
from fleet._envelope import Outcome
from fleet._inline import InlineRunner
from fleet._runtime import Runtime
from fleet.broker import Message
from fleet.codec import Codec, TrustedModules, get_codec
from fleet.config import LoadedSettings, Settings, load_settings
from fleet.errors import (
    UnknownTaskError,
)
from fleet.extensions import Dispatcher, Extension, builtin
from fleet.invocation import Invocation
from fleet.queues import QueueTable, load_queues
from fleet.state import InvocationRecord
from fleet.task import DirectTask, Task, TaskRef

if TYPE_CHECKING:
    from fleet.triggers._extension import AppTriggers
    from fleet.triggers._registry import Triggers
    from fleet.workflows import WorkflowRun, Workflows

__all__ = ["Fleet", "Runtime"]  # Runtime: the worker's modules type with it from here
log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class Fleet(Client):
    """A fleet application: decorate functions with `task` or `direct_task`.

    Args:
        name: application name (the setting `name`).
        extensions: extensions to add (`fleet.extensions.Extension`), after the built-in
            ones (`fleet.extensions.BUILTIN`: triggers).
        **settings: keyword settings, the highest-priority source (see `fleet.config`).
    """

    def __init__(
        self, name: str | None = None, *, extensions: Sequence[Extension] = (), **settings: Any
    ) -> None:
        if name is not None:
            settings["name"] = name
        self.loaded: LoadedSettings = load_settings(settings)
        self.settings: Settings = self.loaded.settings
        self.tasks: dict[str, Task[Any, Any]] = {}
        # Decoded classes come only from task modules and the listed ones (fleet.codec).
        trusted = TrustedModules(
            self.settings.codec_modules, lambda: [t.module for t in self.tasks.values()]
        )
        self.codec: Codec = get_codec(
            self.settings.codec, allow_pickle=self.settings.allow_pickle, trusted=trusted
        )
        self._queues: QueueTable | None = None
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()
        self._inline = InlineRunner(self)
        self.dispatcher = Dispatcher([*builtin(self.settings, extensions), *extensions])
        self.dispatcher.bind(self)

    def __repr__(self) -> str:
        return f"<Fleet {self.settings.name!r} tasks={len(self.tasks)}>"

    # -- decorators -------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(self, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...
    def task(self, func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Make `func` a task: calling it returns an `Invocation` (see `Task`)."""
        return self._decorate(Task, func, options)

    @overload
    def direct_task(self, func: Callable[P, R], /) -> DirectTask[P, R]: ...
    @overload
    def direct_task(self, /, **options: Any) -> Callable[[Callable[P, R]], DirectTask[P, R]]: ...
    def direct_task(self, func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Make `func` a task whose call blocks and returns the value (see `DirectTask`)."""
        return self._decorate(DirectTask, func, options)

    def _decorate(self, cls: type[Task[Any, Any]], func: Any, options: dict[str, Any]) -> Any:
        return _decorate.decorator(self, cls, func, options)

    # -- workflows (fleet.workflows, a built-in extension) ------------------------------

    def workflow(self, func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Make `func` a durable workflow: a task whose body is replayed from its recorded
        history after a crash or a retry (see `fleet.workflows`)."""
        return self._workflows().decorate(func, options)

    def workflow_run(self, invocation_id: str) -> WorkflowRun:
        """A handle on a workflow invocation: data, history, signals, result, cancel."""
        return self._workflows().run(invocation_id)

    def _workflows(self) -> Workflows:
        return cast("Workflows", self.dispatcher.option_owners["force_new_workflow"])

    # -- triggers (fleet.triggers, the built-in extension) ------------------------------

    @property
    def triggers(self) -> Triggers:
        """Add, list, pause, resume, fire and remove triggers (`fleet.triggers`)."""
        return self._triggers().registry()

    def emit(self, name: str, payload: dict[str, Any] | None = None) -> str:
        """Emit the custom event `name`: start the triggers waiting for it (in inline
        mode, at once in this thread). Returns the event's id.

            app.emit("order.paid", {"order_id": 7})
        """
        return self._triggers().emit(name, payload)

    def _triggers(self) -> AppTriggers:
        return cast("AppTriggers", self.dispatcher.option_owners["triggers"])

    # -- connections ------------------------------------------------------------------

    @property
    def queues(self) -> QueueTable:
        if self._queues is None:
            path = self.settings.queues_file
            default = self.settings.default_queue
            self._queues = load_queues(path, default) if path else QueueTable((), default)
        return self._queues

    def runtime(self) -> Runtime:
        """This process's connections, opened on first use."""
        runtime = self._runtime
        if runtime is None or runtime.pid != os.getpid():
            with self._lock:
                runtime = self._runtime
                if runtime is None or runtime.pid != os.getpid():
                    runtime = self._runtime = Runtime(self.settings, self.queues)
        return runtime

    def close(self) -> None:
        """Close this process's connections (they reopen on next use)."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None and runtime.pid == os.getpid():
            runtime.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting -------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        bounds: Sequence[inspect.BoundArguments],
        due: float | None = None,
        ids: Sequence[str] | None = None,
        keys: Sequence[str] = (),
    ) -> list[Invocation[Any]]:
        """Register and publish one invocation per bound call; see the module docstring.
        Under the given invocation `ids`, if any (one per call; a registered one is
        refused with a `StateError`: a trigger's recovery submits with the id it chose).
        `keys`: idempotency keys, one per call ('' for none). The extensions may reuse
        existing invocations for some calls (`before_publish`): those calls' handles
        follow the existing invocation, and nothing of them is registered.

        Raises:
            ArgumentEncodingError: an argument cannot be encoded (nothing was written).
            ExtensionError: an extension refused the calls (nothing was registered).
            PublishError: the publish was not confirmed; the invocations are FAILED.
            RegistrationUnknownError: the state store failed while registering and some
                invocations may have been registered anyway and may still run (their
                ids are named). A `StateError`.
            StateError: the state store failed while registering; whatever it may have
                written was made final and will never run.
        """
        if ids is None:
            submitter = _context.submitter()  # a workflow records its calls (fleet.workflows)
            if submitter is not None:
                return submitter.submit(task, bounds, due)
        if self.settings.inline:
            preset = ids or [""] * len(bounds)
            given = keys or [""] * len(bounds)
            return [
                self._inline.run(task, b, i, k)
                for b, i, k in zip(bounds, preset, given, strict=True)
            ]
        return _submit.submit(self, task, bounds, due, ids, keys)

    def send(
        self, name: str, /, *args: Any, queue: str | None = None, **kwargs: Any
    ) -> Invocation[Any]:
        """Call a task by name, without importing its code (like Celery's `send_task`).

            app.send("shop.tasks.make_thumbnail", 42, width=800).result(timeout=30)

        The call is routed like a call of the decorated task: `queue`, else the task's
        `tasks.<name>` settings, else the queue file's patterns on the name. A task
        registered in this process is called as itself (its signature checked here);
        any other name is submitted unchecked, and a worker that does not know it
        dead-letters the message with the reason.

        Args:
            name: the task's name: `module.qualname`, or its `name=` option.
            *args: positional arguments of the call.
            queue: the queue for this call (so a task parameter named `queue` cannot be
                passed by keyword here; pass it positionally).
            **kwargs: keyword arguments of the call.

        Returns:
            The invocation's handle, as a `Task` call returns it.

        Raises:
            UnknownTaskError: in inline mode, `name` is not registered in this process.
            TaskDefinitionError: `name` or `queue` is not usable.
        """
        known = self.tasks.get(name)
        if known is None and self.settings.inline:
            raise UnknownTaskError(
                f"task {name!r} is not registered in this process; inline mode runs only "
                "tasks it imports (import the module that defines it)"
            )
        task: Task[Any, Any] = (
            known
            if known is not None and queue is None
            else (TaskRef(self, name, queue, like=known))
        )
        self.queues.check_task(task.name, task.options.queue)
        return self.submit(task, [task.bind(args, kwargs)])[0]

    async def asubmit(
        self,
        task: Task[Any, Any],
        bounds: Sequence[inspect.BoundArguments],
        keys: Sequence[str] = (),
    ) -> list[Invocation[Any]]:
        """`submit` for async code, never blocking the event loop (see `fleet.aio`)."""
        return await aio.submit(self, task, bounds, keys)

    def prepare(
        self,
        task: Task[Any, Any],
        bounds: Sequence[inspect.BoundArguments],
        due: float | None = None,
        reply_to: str | None = None,
    ) -> tuple[list[InvocationRecord], list[Message]]:
        """Encode calls into invocation records and their messages, writing nothing but
        large argument values; `reply_to` defaults to this process's waiter."""
        prepared = _prepare.prepare(self, self.runtime(), task, bounds, due, reply_to)
        return prepared.records(), prepared.messages

    def publish(self, messages: Sequence[Message]) -> None:
        """Publish invocation messages; on failure mark them FAILED and re-raise."""
        _submit.publish(self, messages)

    # -- results ----------------------------------------------------------------------

    def outcomes(self, ids: Sequence[str], timeout: float | None = None) -> dict[str, Outcome]:
        """Block until every id is final; inside a task this pauses the invocation.

        Raises:
            ResultTimeoutError: `timeout` passed first (names status, queue, consumers).
        """
        return _results.outcomes(self.runtime(), ids, timeout)

    def outcomes_any(self, ids: Sequence[str], timeout: float | None = None) -> list[Outcome]:
        """Block until at least one id is final; return the final ones."""
        return _results.outcomes_any(self.runtime(), ids, timeout)

    async def aresults(
        self, invocations: Sequence[Invocation[Any]], timeout: float | None = None
    ) -> list[Any]:
        """Every value of `invocations` in order, awaited (see `fleet.aio`)."""
        return await aio.results(self, invocations, timeout)

    def unwrap(self, task: str, outcome: Outcome) -> Any:
        """The value of a finished invocation, or raise its error."""
        return _results.unwrap(self.codec, lambda: self.runtime().state, task, outcome)

    def forget(self, invocation_id: str) -> None:
        runtime = self._runtime
        if runtime is not None and runtime.pid == os.getpid():
            runtime.waiter.forget(invocation_id)

    def record(self, invocation_id: str) -> InvocationRecord:
        """The stored record of an invocation; `InvocationNotFoundError` if none."""
        return _results.record(self.runtime().state, invocation_id)

    def current_invocation(self) -> Invocation[Any] | None:
        """Inside a running task: a handle on its own invocation; else None."""
        execution = _context.current()
        if execution is None:
            return None
        return Invocation(self, execution.invocation_id, execution.task)

    def invocation(self, invocation_id: str) -> Invocation[Any]:
        """A handle on an existing invocation, by id.

        In inline mode this finds the recent inline calls in memory, without opening
        the state store or the broker.

        Raises:
            InvocationNotFoundError: no such invocation.
        """
        if self.settings.inline:
            return self._inline.get(invocation_id)
        return Invocation(self, invocation_id, self.record(invocation_id).task)

    def cancel(self, invocation_id: str, by: str = "cancel") -> bool:
        """Cancel an invocation (see `Invocation.cancel`)."""
        if self.settings.inline:
            return self._inline.get(invocation_id).cancel()
        return _results.cancel(self.runtime(), invocation_id, by, self.dispatcher)
