"""`fleet probe live|ready`: Kubernetes probes that read the pod's own health files.

Job: answer a kubelet every few seconds for almost nothing: no app import, no broker or
state store round trip; only the files `fleet worker` keeps in `health_dir` (see
`fleet.worker.health`).

Contract: `live` exits 0 while the supervisor's heartbeat file is younger than
`--max-age` (default: the setting `dead_after`); `ready` also needs every worker
process of the pod to have its consumer attached (a process whose consumer keeps
failing is not ready). Exit 1 with one line per problem otherwise; exit 3 when no
health folder is configured (`--dir` or the setting `health_dir`).
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "probe", help="liveness and readiness from the worker's health files (no app import)"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    for name, text in (
        ("live", "exit 1 when the supervisor's heartbeat file is stale"),
        ("ready", "exit 1 unless every worker process has its consumer attached"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--dir", help="the health folder (default: the setting health_dir)")
        action.add_argument(
            "--max-age", type=float, help="seconds a heartbeat stays fresh (default: dead_after)"
        )
        action.set_defaults(handler=probe)


def probe(args: argparse.Namespace) -> int:
    from fleet.config import load_settings
    from fleet.errors import ConfigError
    from fleet.worker import health

    folder, max_age = args.dir, args.max_age
    if not folder or max_age is None:
        settings = load_settings().settings
        folder = folder or settings.health_dir
        max_age = settings.dead_after if max_age is None else max_age
    if not folder:
        raise ConfigError("no health folder: set health_dir (FLEET__HEALTH_DIR) or pass --dir")
    check = health.live if args.action == "live" else health.ready
    problems = check(folder, max_age)
    for problem in problems:
        print(f"{'not live' if args.action == 'live' else 'not ready'}: {problem}")
    if problems:
        return 1
    print("live" if args.action == "live" else "ready")
    return 0
