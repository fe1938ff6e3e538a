"""`fleet worker`: run a supervisor with N worker processes of T threads each.

With `--metrics-port` (default: the setting `metrics_port`), the setting `metrics` is turned on for
the supervisor and its worker processes, which share a temporary prometheus_client
multiprocess directory (removed at exit); the supervisor serves `/metrics`.
"""

from __future__ import annotations

import argparse
import logging
import os

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
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics of the supervisor and its worker processes on "
        "http://HOST:PORT/metrics (setting `metrics_host`; needs the extra [metrics]; "
        "default: setting `metrics_port`, 0 = none)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fleet.config import load_settings
    from fleet.errors import ConfigError

    port = args.metrics_port
    if port is None:  # the setting, from every source but the app's own keywords
        port = load_settings().settings.metrics_port
    if not port:
        return _run(args)
    if not 0 < port < 65536:
        raise ConfigError(f"--metrics-port {port!r}: not a TCP port (1-65535)")
    # Before the app is loaded: prometheus_client picks its mode when first imported,
    # and the worker processes inherit the environment.
    from fleet.monitor import _metrics_export

    os.environ["FLEET__METRICS"] = "true"
    os.environ["FLEET__METRICS_PORT"] = str(port)
    path = _metrics_export.prepare_multiprocess()
    try:
        return _run(args)
    finally:
        _metrics_export.cleanup(path)


def _run(args: argparse.Namespace) -> int:
    from fleet._urls import redact
    from fleet.cli import load
    from fleet.errors import ConfigError
    from fleet.worker.child import import_task_modules
    from fleet.worker.supervisor import Supervisor

    app = load(args.app)
    settings = app.settings
    if settings.metrics_port and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        raise ConfigError(
            f"setting metrics_port={settings.metrics_port} (from "
            f"{app.loaded.sources.get('metrics_port', '?')}): give it as --metrics-port or "
            "in the settings files or environment, which are read before the app is loaded"
        )
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
