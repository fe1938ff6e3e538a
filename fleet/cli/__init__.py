"""The `fleet` command line.

Job: one entry point for operators: run workers, inspect state, manage queues and dead
letters, check health. Contract: every subcommand lives in its own module with an
`add_parser(subparsers)` function that registers it and sets `handler`; errors of
fleet's own (`FleetError`) print one line naming the problem. Exit statuses (`EXIT`,
also in `fleet --help`) tell a script or a probe what went wrong without parsing text.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fleet.errors import (
    BrokerError,
    ConfigError,
    DuplicateInvocationError,
    FleetError,
    InvalidTransitionError,
    InvocationNotFoundError,
    QueueMismatchError,
    StateError,
    TaskDefinitionError,
    TriggerNotFoundError,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_CONNECTION = 0, 1, 2, 3, 4
EXIT = f"""exit status:
  {EXIT_OK}  done (fleet check: healthy)
  {EXIT_FAILED}  the command ran and found a problem: unhealthy, not found, refused
  {EXIT_USAGE}  the command line is wrong
  {EXIT_CONFIG}  a configuration error: settings, queue definitions, an app or task module
     that does not load, a queue that clashes with its declaration
  {EXIT_CONNECTION}  the broker or the state store cannot be reached
"""


def build_parser() -> argparse.ArgumentParser:
    from fleet import __version__
    from fleet.cli import (
        deadletters,
        inspect,
        invocations,
        monitor,
        probe,
        queues,
        state,
        tasks,
        triggers,
        worker,
    )

    parser = argparse.ArgumentParser(
        prog="fleet",
        description="fleet: distributed tasks",
        epilog=EXIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    modules = (
        worker,
        monitor,
        tasks,
        inspect,
        invocations,
        queues,
        deadletters,
        state,
        triggers,
        probe,
    )
    for module in modules:
        module.add_parser(sub)
    return parser


def add_app_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    default = "required" if required else "default: settings only"
    parser.add_argument(
        "--app",
        required=required,
        metavar="MODULE:ATTR",
        help=f"the Fleet app to load, e.g. myproject.tasks:app ({default})",
    )


def load(app_path: str | None):  # type: ignore[no-untyped-def]  # returns Fleet
    """The app named by --app, or a bare Fleet() built from the settings."""
    from fleet.app import Fleet
    from fleet.worker.child import load_app

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return load_app(app_path) if app_path else Fleet()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except FleetError as exc:
        print(f"fleet {args.command}: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


def exit_code(exc: FleetError) -> int:
    """The exit status for an error of fleet's own (see `EXIT`)."""
    if isinstance(exc, ConfigError | TaskDefinitionError | QueueMismatchError):
        return EXIT_CONFIG
    not_done = (
        InvocationNotFoundError,
        InvalidTransitionError,
        DuplicateInvocationError,
        TriggerNotFoundError,
    )
    if isinstance(exc, not_done):
        return EXIT_FAILED
    if isinstance(exc, BrokerError | StateError):
        return EXIT_CONNECTION
    return EXIT_FAILED
