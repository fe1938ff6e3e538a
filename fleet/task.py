"""Tasks: decorated functions that run on workers when called.

Job: wrap a plain function so that calling it submits an invocation (`Task`) or returns
the value computed remotely (`DirectTask`), with the call site unchanged.

Contract:
- Arguments are bound against the function's signature at the call site: a wrong call
  raises `TypeError` there, and an argument the codec cannot encode raises
  `ArgumentEncodingError` naming it, before anything is written or published.
- The task name is `module.qualname` (or the `name=` option); for a script run as
  `__main__` it is derived from the script's file name, so workers that import that
  module find it. `TaskRef` names a task this process does not import (`Fleet.send`).
- Options come from the decorator, overridden by the `tasks` section of the settings
  (`fleet._task_options`, re-exported here).
- In inline mode every call runs in the caller's thread as a worker would run it
  (codec both ways, retries, fan-out and aggregation; see `fleet._inline`).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from fleet._task_options import (
    OPTION_NAMES,
    TaskOptions,
    build_options,
    retry_delay,
    retry_limit,
    task_name,
    validate,
)
from fleet.errors import TaskDefinitionError, UnknownTaskError
from fleet.invocation import Group, Invocation

if TYPE_CHECKING:
    from fleet._client import Client

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "OPTION_NAMES",
    "DirectCall",
    "DirectTask",
    "Task",
    "TaskCall",
    "TaskOptions",
    "TaskRef",
    "build_options",
    "retry_delay",
    "retry_limit",
    "task_name",
]
_DEFAULT = object()
RESERVED = ("countdown", "eta")
"""Keyword arguments taken by `Task.schedule` itself."""


class Task(Generic[P, R]):
    """A function that runs on workers. Calling it returns an `Invocation`."""

    def __init__(self, app: Client, func: Callable[P, R], options: Mapping[str, Any]) -> None:
        self.app = app
        self.func = func
        self.name, self.module = task_name(func, options.get("name"))
        self.signature = inspect.signature(func)
        self.params = tuple(self.signature.parameters)
        self.options = build_options(self.name, options, app.settings.tasks)
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
        """Bind a call's arguments; raise TypeError naming the task when they don't fit."""
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        bound = self.bind(args, kwargs)
        return self.app.submit(self, [bound])[0]

    def call_with(self, *, idempotency_key: str) -> TaskCall[P, R]:
        """The same task with per-call options:
        `charge.call_with(idempotency_key="order-7-charge")(7, amount=30)`.

        Args:
            idempotency_key: calls of this task with the same key, within its
                `idempotency_ttl` (a day by default), make one invocation: every such
                call returns a handle on it, also after it finished.
        """
        return TaskCall(self, idempotency(self.name, idempotency_key))

    async def acall(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """Submit from async code without blocking the event loop (see `fleet.aio`)."""
        bound = self.bind(args, kwargs)
        return (await self.app.asubmit(self, [bound]))[0]

    def parallelize(self, items: Iterable[Any]) -> Group[R]:
        """Submit one invocation per item in one batch.

        An item is a tuple of positional arguments, a dict of keyword arguments, or a
        single value for a one-argument call.
        """
        bounds = [self.bind(*_as_call(item)) for item in items]
        return Group(self.app.submit(self, bounds))

    def schedule(
        self,
        *args: Any,
        countdown: float | None = None,
        eta: datetime | None = None,
        **kwargs: Any,
    ) -> Invocation[R]:
        """Submit a call that runs after `countdown` seconds or at `eta`."""
        if (countdown is None) == (eta is None):
            raise TypeError(f"{self.name}.schedule(): give exactly one of countdown= or eta=")
        if eta is not None:
            if eta.tzinfo is None:
                raise TypeError(f"{self.name}.schedule(): eta must be timezone-aware")
            due = eta.timestamp()
        else:
            due = time.time() + float(countdown or 0)
        bound = self.bind(args, kwargs)
        return self.app.submit(self, [bound], due=due)[0]

    def run_local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the wrapped function in this thread, bypassing fleet."""
        return self.func(*args, **kwargs)


def _as_call(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(item, tuple):
        return item, {}
    if isinstance(item, dict):
        return (), item
    return (item,), {}


_ANY_CALL = inspect.Signature(
    [
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ]
)


class TaskRef(Task[..., Any]):
    """A task named, not imported: what `Fleet.send` submits.

    Calls are submitted like a decorated task's: the same name, the `tasks.<name>`
    settings, routed by `queue` or else the queue file's patterns on the name. Without
    `like` (the task is not registered in this process) the arguments are not checked
    against a signature here; the worker checks them.
    """

    def __init__(
        self,
        app: Client,
        name: str,
        queue: str | None = None,
        like: Task[Any, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or "." not in name:
            raise TaskDefinitionError(
                f"send: a task name is 'module.function' (or the task's name= option), got {name!r}"
            )
        self.app = app
        self.name = name
        self.module = like.module if like is not None else name.rpartition(".")[0]
        self.signature = like.signature if like is not None else _ANY_CALL
        self.params = like.params if like is not None else ()
        options = like.options if like is not None else build_options(name, {}, app.settings.tasks)
        self.options = replace(options, queue=queue) if queue is not None else options
        validate(name, self.options)
        self.func = like.func if like is not None else self._not_here

    def _not_here(self, *args: Any, **kwargs: Any) -> Any:
        raise UnknownTaskError(f"task {self.name!r} is not defined in this process")


class DirectTask(Task[P, R]):
    """A task whose call blocks and returns the value, like the plain function.

    A call waits at most the task's `direct_timeout` (option, else the setting; 300 s by
    default, 0 forever), then raises `fleet.errors.ResultTimeoutError` (a
    `TimeoutError`) naming the invocation, its status, its queue and that queue's
    consumer count. `task.call_with(timeout=...)` overrides it for one call (None:
    forever).
    """

    def call_with(  # type: ignore[override]  # adds timeout=; the key is optional here
        self, *, timeout: float | object | None = _DEFAULT, idempotency_key: str = ""
    ) -> DirectCall[P, R]:
        """The same task with per-call options: `report.call_with(timeout=5)("Q1")`.

        Args:
            timeout: seconds to wait for the value; None waits forever (default: the
                task's `direct_timeout`).
            idempotency_key: as for `Task.call_with` (with `parallel_func`, item `i` of
                the fan-out gets the key `f"{idempotency_key}#{i}"`).
        """
        if timeout is _DEFAULT:
            timeout = self.default_timeout()
        elif timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise TypeError(f"{self.name}.call_with(): timeout must be seconds >= 0 or None")
        key = idempotency(self.name, idempotency_key) if idempotency_key else ""
        return DirectCall(self, timeout, key)

    def default_timeout(self) -> float | None:
        """Seconds a call waits for its value (None: forever), from option or setting."""
        value = self.options.direct_timeout
        if value is None:
            value = self.app.settings.direct_timeout
        return float(value) if value else None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:  # type: ignore[override]
        return self.call(args, kwargs, self.default_timeout())

    async def acall(  # type: ignore[override]  # returns the value, not an Invocation
        self, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await the value from async code without blocking the event loop."""
        return await self.acall_with(args, kwargs, self.default_timeout())

    def call(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: float | None, key: str = ""
    ) -> R:
        """Submit one call (or its fan-out) and wait up to `timeout` for the value."""
        # Inline mode takes the same path: submit runs each invocation in this thread.
        bounds = self._bounds(args, kwargs)
        group: Group[R] = Group(self.app.submit(self, bounds, keys=_keys(key, len(bounds))))
        values = group.results(timeout)
        return self._value(values)

    async def acall_with(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: float | None, key: str = ""
    ) -> R:
        """`call` for async code (see `fleet.aio`)."""
        bounds = self._bounds(args, kwargs)
        invocations = await self.app.asubmit(self, bounds, _keys(key, len(bounds)))
        return self._value(await self.app.aresults(invocations, timeout))

    def _bounds(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        """The call, or the calls of its fan-out (`parallel_func`)."""
        bound = self.bind(args, kwargs)
        fan_out = self.options.parallel_func
        if fan_out is None:
            return [bound]
        return [self.bind(*_as_call(item)) for item in fan_out(dict(bound.arguments))]

    def _value(self, values: list[Any]) -> R:
        aggregate = self.options.aggregate_func
        if aggregate is None:
            return values[0]  # type: ignore[no-any-return]
        return aggregate(values)  # type: ignore[no-any-return]  # aggregate_func is untyped


def _keys(key: str, n: int) -> list[str]:
    """One idempotency key per call: `key` for one, `key#i` for item i of a fan-out."""
    if not key:
        return []
    return [key] if n == 1 else [f"{key}#{i}" for i in range(n)]


def idempotency(task: str, key: object) -> str:
    """`key`, checked: a non-empty string (a `TypeError` naming the task otherwise)."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"{task}.call_with(): idempotency_key must be a non-empty string")
    return key


class TaskCall(Generic[P, R]):
    """A task with per-call options (`Task.call_with`): calling it submits."""

    def __init__(self, task: Task[P, R], key: str) -> None:
        self.task = task
        self.key = key

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        bound = self.task.bind(args, kwargs)
        return self.task.app.submit(self.task, [bound], keys=[self.key])[0]

    async def acall(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        bound = self.task.bind(args, kwargs)
        return (await self.task.app.asubmit(self.task, [bound], [self.key]))[0]


class DirectCall(Generic[P, R]):
    """A direct task with per-call options (`DirectTask.call_with`)."""

    def __init__(self, task: DirectTask[P, R], timeout: float | None, key: str = "") -> None:
        self.task = task
        self.timeout = timeout
        self.key = key

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.task.call(args, kwargs, self.timeout, self.key)

    async def acall(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.task.acall_with(args, kwargs, self.timeout, self.key)
