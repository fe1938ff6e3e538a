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
- Options come from the decorator, overridden by the `tasks` section of the settings.
- In inline mode every call runs in the caller's thread as a worker would run it
  (codec both ways, retries, fan-out and aggregation; see `fleet._inline`).
"""

from __future__ import annotations

import functools
import inspect
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from fleet._exceptions import import_exception_type
from fleet.errors import ConfigError, TaskDefinitionError, UnknownTaskError
from fleet.invocation import Group, Invocation

if TYPE_CHECKING:
    from fleet._client import Client
    from fleet.config import Settings

P = ParamSpec("P")
R = TypeVar("R")

RESERVED = ("countdown", "eta")
"""Keyword arguments taken by `Task.schedule` itself."""


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task options (decorator keywords, or `tasks.<name>` in the settings)."""

    name: str | None = None
    """Task name (default: `module.qualname`). Give producer and worker the same name
    when the function's import path differs between them."""
    queue: str | None = None
    """Queue to route to (default: queue routing from the queue file)."""
    max_retries: int | None = None
    """Retries after a failed attempt (default: the setting `max_retries`)."""
    retry_for: tuple[type[BaseException], ...] = (Exception,)
    """Exception types that are retried; others fail at once."""
    retry_backoff: float | None = None
    """Base seconds of the exponential backoff (default: setting)."""
    retry_backoff_max: float | None = None
    soft_time_limit: float | None = None
    """Seconds after which `SoftTimeLimitExceeded` is raised inside the task."""
    hard_time_limit: float | None = None
    """Seconds after which the slot running the task is killed."""
    parallel_func: Callable[[dict[str, Any]], Iterable[Any]] | None = None
    """DirectTask fan-out: call arguments -> list of per-item argument tuples."""
    aggregate_func: Callable[[list[Any]], Any] | None = None
    """DirectTask fan-out: per-item results in input order -> the call's value."""
    direct_timeout: float | None = None
    """DirectTask: seconds a call waits for its value (default: the setting
    `direct_timeout`; 0 waits forever). Per call: `task.call_with(timeout=...)`."""
    extensions: Mapping[str, Any] = field(default_factory=dict)
    """Not a keyword itself: the options extensions own, given as keywords of the
    decorator and kept here by name: `triggers=[Trigger.cron(...), ...]` (see Triggers)."""


_OPTION_NAMES = {f.name for f in fields(TaskOptions)} - {"extensions"}
_FILE_OPTIONS = _OPTION_NAMES - {"name", "parallel_func", "aggregate_func"}


def task_name(func: Callable[..., Any], name: object = None) -> tuple[str, str]:
    """Return (task name, module to import) for `func`, named `name` if given."""
    if name is not None:
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise TaskDefinitionError(
                f"task {func.__qualname__!r}: name must be a non-empty string, got {name!r}"
            )
        module = func.__module__
        return name, "" if module == "__main__" else module
    module = func.__module__
    qualname = func.__qualname__
    if "<locals>" in qualname:
        raise TaskDefinitionError(
            f"{qualname!r} is defined inside a function; workers can only import "
            "module-level functions, so define the task at module level"
        )
    if module == "__main__":
        module = _main_module_name(func)
    return f"{module}.{qualname}", module


def _main_module_name(func: Callable[..., Any]) -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)  # run with `python -m package.module`
    path = getattr(main, "__file__", None)
    stem = path.rsplit("/", 1)[-1].removesuffix(".py") if path else ""
    if not stem.isidentifier():
        raise TaskDefinitionError(
            f"task {func.__qualname__!r} is defined in a script run as __main__ "
            f"({path!r}) whose name is not an importable module name. Workers import "
            "tasks by module name: move the task into a module (e.g. tasks.py) and "
            "import it from the script."
        )
    return stem


def build_options(
    name: str, given: Mapping[str, Any], settings_tasks: Mapping[str, Any]
) -> TaskOptions:
    """Merge decorator options with the settings' per-task section, validating both."""
    unknown = set(given) - _OPTION_NAMES
    if unknown:
        raise TaskDefinitionError(
            f"task {name!r}: unknown option(s) {sorted(unknown)}; known: {sorted(_OPTION_NAMES)}"
        )
    options = TaskOptions(**given)
    override = settings_tasks.get(name) or {}
    if not isinstance(override, Mapping):
        raise ConfigError(f"setting tasks[{name!r}] must be a mapping of options")
    bad = set(override) - _FILE_OPTIONS
    if bad:
        raise ConfigError(
            f"setting tasks[{name!r}]: unknown or not-configurable option(s) {sorted(bad)}; "
            f"allowed: {sorted(_FILE_OPTIONS)}"
        )
    values = dict(override)
    if "retry_for" in values:
        values["retry_for"] = _exception_types(name, values["retry_for"])
    options = replace(options, **values)
    _validate(name, options)
    return options


def retry_limit(options: TaskOptions, settings: Settings) -> int:
    """How many retries a failed invocation of a task with `options` gets."""
    return settings.max_retries if options.max_retries is None else options.max_retries


def retry_delay(
    options: TaskOptions, settings: Settings, attempt: int, exc: BaseException
) -> float | None:
    """Seconds before retrying after attempt number `attempt` (from 1) raised `exc`.

    Returns None when it is not retried (attempts used up, or `exc` not in `retry_for`).
    The delay grows exponentially from `retry_backoff` up to `retry_backoff_max`, with
    equal jitter. Workers and inline mode both decide retries here.
    """
    if attempt > retry_limit(options, settings) or not isinstance(exc, options.retry_for):
        return None
    base = settings.retry_backoff if options.retry_backoff is None else options.retry_backoff
    cap = options.retry_backoff_max
    delay = min(settings.retry_backoff_max if cap is None else cap, base * 2 ** (attempt - 1))
    return float(delay / 2 + random.uniform(0, delay / 2))


def _exception_types(name: str, value: Any) -> tuple[type[BaseException], ...]:
    names = [value] if isinstance(value, str) else list(value)
    try:
        return tuple(import_exception_type(str(n)) for n in names)
    except (ImportError, TypeError, ValueError) as exc:
        raise ConfigError(f"setting tasks[{name!r}].retry_for: {exc}") from exc


def _validate(name: str, options: TaskOptions) -> None:
    where = f"task {name!r}"
    if isinstance(options.retry_for, type):
        object.__setattr__(options, "retry_for", (options.retry_for,))
    for exc_type in options.retry_for:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TaskDefinitionError(
                f"{where}: retry_for must hold exception types, got {exc_type!r}"
            )
    if options.max_retries is not None and (
        not isinstance(options.max_retries, int) or options.max_retries < 0
    ):
        raise TaskDefinitionError(
            f"{where}: max_retries must be an int >= 0, got {options.max_retries!r}"
        )
    timeout = options.direct_timeout
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise TaskDefinitionError(
            f"{where}: direct_timeout must be seconds >= 0 (0: forever), got {timeout!r}"
        )
    for key in ("soft_time_limit", "hard_time_limit", "retry_backoff", "retry_backoff_max"):
        value = getattr(options, key)
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise TaskDefinitionError(f"{where}: {key} must be seconds > 0, got {value!r}")
    if (options.parallel_func is None) != (options.aggregate_func is None):
        raise TaskDefinitionError(f"{where}: parallel_func and aggregate_func go together")
    for key in ("parallel_func", "aggregate_func"):
        value = getattr(options, key)
        if value is not None and not callable(value):
            raise TaskDefinitionError(f"{where}: {key} must be callable, got {value!r}")
    if options.queue is not None and not (isinstance(options.queue, str) and options.queue):
        raise TaskDefinitionError(
            f"{where}: queue must be a non-empty string, got {options.queue!r}"
        )


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
        _validate(name, self.options)
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

    def call_with(self, *, timeout: float | None) -> DirectCall[P, R]:
        """The same task with a per-call timeout: `report.call_with(timeout=5)("Q1")`.

        Args:
            timeout: seconds to wait for the value; None waits forever.
        """
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise TypeError(f"{self.name}.call_with(): timeout must be seconds >= 0 or None")
        return DirectCall(self, timeout)

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

    def call(self, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: float | None) -> R:
        """Submit one call (or its fan-out) and wait up to `timeout` for the value."""
        # Inline mode takes the same path: submit runs each invocation in this thread.
        bound = self.bind(args, kwargs)
        fan_out = self.options.parallel_func
        if fan_out is None:
            value: R = self.app.submit(self, [bound])[0].result(timeout)
            return value
        group: Group[R] = self.parallelize(list(fan_out(dict(bound.arguments))))
        aggregate = self.options.aggregate_func
        assert aggregate is not None
        return aggregate(group.results(timeout))  # type: ignore[no-any-return]

    async def acall_with(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], timeout: float | None
    ) -> R:
        """`call` for async code (see `fleet.aio`)."""
        bound = self.bind(args, kwargs)
        fan_out = self.options.parallel_func
        if fan_out is None:
            invocations = await self.app.asubmit(self, [bound])
            value: R = (await self.app.aresults(invocations, timeout))[0]
            return value
        aggregate = self.options.aggregate_func
        assert aggregate is not None
        bounds = [self.bind(*_as_call(item)) for item in fan_out(dict(bound.arguments))]
        values = await self.app.aresults(await self.app.asubmit(self, bounds), timeout)
        return aggregate(values)  # type: ignore[no-any-return]  # aggregate_func is untyped


class DirectCall(Generic[P, R]):
    """A direct task with a per-call timeout (`DirectTask.call_with`)."""

    def __init__(self, task: DirectTask[P, R], timeout: float | None) -> None:
        self.task = task
        self.timeout = timeout

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.task.call(args, kwargs, self.timeout)

    async def acall(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.task.acall_with(args, kwargs, self.timeout)
