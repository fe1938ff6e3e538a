"""Decorating a function into a task of an app (`Fleet.task`, `Fleet.direct_task`).

Job: check the function and the options, split the options between the core
(`fleet._task_options`) and the extensions that own the others (each checks its own at
once, `Extension.check_options`), build the task and register it with the app.

Contract: misuse raises `TaskDefinitionError` at decoration time naming the function or
the task: not a function, an async function, an option of `direct_task` on a plain
task, an option no one owns (the error names the options each owner knows and the
owner of a close match), or a bad value an extension refuses. Redefining a task
(same name) replaces it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fleet.errors import TaskDefinitionError
from fleet.task import OPTION_NAMES, Task

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger("fleet.app")
DIRECT_ONLY = frozenset({"parallel_func", "aggregate_func", "direct_timeout"})


def decorator(app: Fleet, cls: type[Task[Any, Any]], func: Any, options: dict[str, Any]) -> Any:
    """The task made of `func`, or (`func` None) a decorator that makes it."""
    direct_only = sorted(DIRECT_ONLY & set(options))
    if cls is Task and direct_only:
        raise TaskDefinitionError(f"{'/'.join(direct_only)}: options of direct_task only")

    def wrap(f: Callable[..., Any]) -> Task[Any, Any]:
        return make(app, cls, f, options)

    return wrap if func is None else wrap(func)


def make(
    app: Fleet, cls: type[Task[Any, Any]], f: Callable[..., Any], options: dict[str, Any]
) -> Task[Any, Any]:
    """Build and register the task `f` with `options`; see the module docstring."""
    if not callable(f) or inspect.isclass(f):
        raise TaskDefinitionError(f"@task needs a function, got {f!r}")
    if inspect.iscoroutinefunction(f):
        raise TaskDefinitionError(f"{f.__qualname__!r} is async; tasks are plain functions")
    dispatcher = app.dispatcher
    owners = dispatcher.option_owners
    stray = set(options) - owners.keys() - OPTION_NAMES
    if stray:
        name = options.get("name") or f"{f.__module__}.{f.__qualname__}"
        dispatcher.refuse_unknown(name, stray, OPTION_NAMES)
    task = cls(app, f, {k: v for k, v in options.items() if k not in owners})
    owned = {k: v for k, v in options.items() if k in owners}
    if owned:  # an extension's own options, checked by it now
        dispatcher.check_options(task.name, owned, task.signature)
        task.options = replace(task.options, extensions=owned)
    app.queues.check_task(task.name, task.options.queue)  # a checked contract
    existing = app.tasks.get(task.name)
    if existing is not None and existing.func is not f:
        log.debug("task %s redefined", task.name)
    app.tasks[task.name] = task
    return task
