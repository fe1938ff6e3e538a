"""Entry point of a spawned worker process, and how a worker loads its app and tasks.

Job: in a fresh interpreter, die with the supervisor, load the app by its import path
(`load_app`), start the extensions' per-process services (`services()`), run a
`WorkerProcess` until SIGTERM, stop the services, and exit. Every `WorkerProcess`
imports the modules of the app's setting `task_modules` as it starts
(`import_task_modules`, also used by `fleet tasks`). A task module that fails to import
does not stop the worker: its traceback is logged once per process, and the error is
kept so that a message for one of its tasks is dead-lettered with that cause
(`unknown_task`) instead of a bare "unknown task".

Contract: exit status 0 after a clean stop (including recycling after
`max_tasks_per_child` tasks or above `max_memory_per_child` MiB), 75 after stopping
itself for a hard time limit (once its other invocations finished, within
`shutdown_grace`), 70 at once when the supervisor that spawned it is already
gone (it died before this process could arm PR_SET_PDEATHSIG, which would otherwise
kill this process with it).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import sys
from typing import TYPE_CHECKING

from fleet._logging import setup_logging
from fleet.errors import UnknownTaskError
from fleet.worker import _services

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger(__name__)
EXIT_ORPHANED = 70
_FAILED: dict[str, BaseException] = {}
"""Task modules that failed to import in this process, with their error."""


def load_app(path: str) -> Fleet:
    """Import 'package.module:attribute' (attribute defaults to 'app')."""
    from fleet.app import Fleet
    from fleet.errors import ConfigError

    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--app {path!r}: cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, Fleet):
        raise ConfigError(f"--app {path!r}: {module_name}.{attribute or 'app'} is not a Fleet app")
    return app


def import_task_modules(app: Fleet, *, log_failures: bool = True) -> dict[str, BaseException]:
    """Import the modules of the setting `task_modules`, registering their tasks.

    Args:
        app: the loaded app.
        log_failures: log each failure with its traceback, the first time only (off
            for callers that show it themselves, such as `fleet tasks`).

    Returns:
        The modules that failed to import in this process (now or before), with their
        error.
    """
    for name in app.settings.task_modules:
        if name in _FAILED:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:
            _FAILED[name] = exc
            if not log_failures:
                continue
            log.error(
                "task module %r failed to import; its tasks will be dead-lettered",
                name,
                exc_info=exc,
                extra={"task_module": name},
            )
    return failed_imports()


def failed_imports() -> dict[str, BaseException]:
    """Task modules that failed to import in this process, with their error."""
    return dict(_FAILED)


def unknown_task(task: str, module: str = "") -> UnknownTaskError:
    """The error for a message naming `task`, which is not registered here.

    Args:
        task: the task name in the message.
        module: the module the message says defines it; only looked up among the
            failed imports, never imported.

    Returns:
        An error naming the task, and the import error of its module (chained) when
        that module is a task module that failed to import in this process.
    """
    parts = task.split(".")
    for name in [module, *(".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1))]:
        cause = _FAILED.get(name)
        if cause is not None:
            error = UnknownTaskError(
                f"unknown task {task!r}: its module {name!r} failed to import on this "
                f"worker: {type(cause).__name__}: {cause}"
            )
            error.__cause__ = cause
            return error
    return UnknownTaskError(
        f"unknown task {task!r}: not registered on this worker (workers import the app's "
        "module and the setting `task_modules`, never a module a message names)"
    )


def _die_with_parent() -> None:
    """Be killed when the supervisor dies; exit now if it died while we started."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            log.debug("prctl unavailable", exc_info=True)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        # The supervisor was gone before the death signal was armed: nobody would
        # ever stop this process. Its invocations (none yet) are the leader's concern.
        os._exit(EXIT_ORPHANED)


def child_main(
    app_path: str, runner: str, supervisor: str, queues: list[str], threads: int
) -> None:
    _die_with_parent()
    from fleet.worker.process import EXIT_HARD_LIMIT, WorkerProcess

    app = load_app(app_path)
    setup_logging(app.settings.log_level, app.settings.log_format)
    worker = WorkerProcess(
        app, queues=queues, threads=threads, runner=runner, supervisor=supervisor
    )
    worker.exit_on_hard_limit = True
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    services = _services.start(app.dispatcher)
    try:
        worker.run()
    finally:
        _services.stop(services)
    app.close()
    if worker.hung:
        # A thread past its hard limit may still run: only leaving at once ends it.
        logging.shutdown()
        os._exit(EXIT_HARD_LIMIT)
