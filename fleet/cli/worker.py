"""`fleet worker`: run a supervisor with N worker processes of T threads each."""

from __future__ import annotations

import argparse
import logging

from fleet._logging import setup_logging

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    parser = sub.add_parser("worker", help="run worker processes for an app")
    add_app_option(parser, required=True)
    parser.add_argument(
        "--queues",
        default="",
        help="comma-separated queues, each defined in the queues file (default: the default "
        "queue and every queue the app's tasks route to)",
    )
    parser.add_argument(
        "--processes",
        "-p",
        type=int,
        default=None,
        help="worker processes (default: setting `processes`, 0 = CPUs)",
    )
    parser.add_argument(
        "--threads",
        "-t",
        type=int,
        default=None,
        help="concurrent invocations per process (default: setting `threads`)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fleet._urls import redact
    from fleet.cli import load
    from fleet.worker.child import import_task_modules
    from fleet.worker.supervisor import Supervisor

    app = load(args.app)
    settings = app.settings
    setup_logging(settings.log_level, settings.log_format)
    import_task_modules(app)  # their tasks' queues count below; children log failures too
    requested = [q.strip() for q in args.queues.split(",") if q.strip()]
    queues = app.queues.worker_queues(requested, app.tasks.values(), what="--queues")
    if not requested:
        log.info("no --queues given: consuming %s (default queue and task routes)", queues)
    # Absolute since the settings resolved them: says which database a worker really uses.
    log.info("broker %s, state store %s", redact(settings.broker_url), redact(settings.state_url))
    processes = settings.processes if args.processes is None else args.processes
    threads = settings.threads if args.threads is None else args.threads
    supervisor = Supervisor(app, args.app, processes=processes, threads=threads, queues=queues)
    return supervisor.run()
