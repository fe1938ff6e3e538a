"""Task options: what `@app.task(...)` takes, merged with the settings and checked.

Job: the `TaskOptions` dataclass (the options the core owns; extensions own others, see
`fleet.extensions`), task naming (`task_name`), merging decorator options with the
settings' `tasks.<name>` section (`build_options`), and the retry rules workers and
inline mode share (`retry_limit`, `retry_delay`).

Contract: bad values raise `TaskDefinitionError` (decorator) or `ConfigError`
(settings) naming the task and the value; nothing here does I/O.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from fleet._exceptions import import_exception_type
from fleet.errors import ConfigError, TaskDefinitionError

if TYPE_CHECKING:
    from fleet.config import Settings


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


OPTION_NAMES = frozenset({f.name for f in fields(TaskOptions)} - {"extensions"})
"""The options the core itself owns (extensions own others: `fleet.extensions`)."""
_FILE_OPTIONS = OPTION_NAMES - {"name", "parallel_func", "aggregate_func"}


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
    unknown = set(given) - OPTION_NAMES
    if unknown:
        raise TaskDefinitionError(
            f"task {name!r}: unknown option(s) {sorted(unknown)}; known: {sorted(OPTION_NAMES)}"
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
    validate(name, options)
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


def validate(name: str, options: TaskOptions) -> None:
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
