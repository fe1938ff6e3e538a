"""The `fleet` command line.

Job: one entry point for operators: run workers, inspect state, manage queues and dead
letters, check health. Contract: every subcommand lives in its own module with an
`add_parser(subparsers)` function that registers it and sets `handler`; errors of
fleet's own (`FleetError`) print one line naming the problem and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fleet.errors import FleetError


def build_parser() -> argparse.ArgumentParser:
    from fleet import __version__
    from fleet.cli import (
        deadletters,
        inspect,
        invocations,
        queues,
        state,
        tasks,
        triggers,
        worker,
    )

    parser = argparse.ArgumentParser(prog="fleet", description="fleet: distributed tasks")
    parser.add_argument("--version", action="version", version=f"fleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for module in (worker, tasks, inspect, invocations, queues, deadletters, state, triggers):
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
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)
