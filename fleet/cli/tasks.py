"""`fleet tasks`: the tasks a worker of an app would run, with their queue and options.

Job: load the app as `fleet worker` does (its module, then the setting `task_modules`)
and list every registered task. Contract: exit 0 with the list; exit 1 with the list
and each failed task module's traceback when one of `task_modules` does not import;
exit 3 with the traceback when the app itself does not load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.task import Task


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    parser = sub.add_parser("tasks", help="list the registered tasks, their queue and options")
    add_app_option(parser, required=True)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=list_tasks)


def list_tasks(args: argparse.Namespace) -> int:
    from fleet.cli import EXIT_CONFIG, load
    from fleet.errors import FleetError
    from fleet.worker.child import import_task_modules

    try:
        app = load(args.app)
    except Exception as exc:
        # The one-line FleetError of other commands hides what a newcomer needs here:
        # the import error of the app's module, deep in its own imports.
        traceback.print_exception(exc, file=sys.stderr)
        what = str(exc) if isinstance(exc, FleetError) else f"{type(exc).__name__}: {exc}"
        print(f"fleet tasks: --app {args.app!r} does not load: {what}", file=sys.stderr)
        return EXIT_CONFIG
    failed = import_task_modules(app, log_failures=False)
    rows = [
        (task.name, type(task).__name__, app.queues.route(task.name, task.options.queue), task)
        for task in sorted(app.tasks.values(), key=lambda t: t.name)
    ]
    if args.json:
        listed = [
            {"task": name, "kind": kind, "queue": queue, "options": _options(task)}
            for name, kind, queue, task in rows
        ]
        print(json.dumps({"tasks": listed, "failed_modules": sorted(failed)}, indent=2))
        return 1 if failed else 0
    width = max([len("task"), *(len(name) for name, _, _, _ in rows)])
    queue_width = max([len("queue"), *(len(queue) for _, _, queue, _ in rows)])
    print(f"{'task':<{width}}  {'kind':<10}  {'queue':<{queue_width}}  options")
    for name, kind, queue, task in rows:
        print(f"{name:<{width}}  {kind:<10}  {queue:<{queue_width}}  {_options(task)}")
    print(f"{len(rows)} task(s) in app {app.settings.name!r}")
    for module, error in failed.items():
        print(f"\ntask module {module!r} failed to import:", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)
    return 1 if failed else 0


def _options(task: Task[Any, Any]) -> str:
    """The options that differ from the defaults, as name=value."""
    from fleet.task import TaskOptions

    defaults = TaskOptions()
    shown = []
    for field in dataclasses.fields(TaskOptions):
        value = getattr(task.options, field.name)
        if field.name == "queue" or value == getattr(defaults, field.name):
            continue
        if field.name == "extensions":  # e.g. triggers=2 (`fleet triggers list` shows them)
            shown += [
                f"{k}={len(v) if isinstance(v, list | tuple) else _show(v)}"
                for k, v in value.items()
            ]
            continue
        shown.append(f"{field.name}={_show(value)}")
    return " ".join(shown) or "-"


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_show(v) for v in value) + ")"
    if isinstance(value, type) or callable(value):
        return str(getattr(value, "__qualname__", value))
    return repr(value)
