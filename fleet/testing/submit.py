"""`python -m fleet.testing.submit TASK [--args JSON] [--timeout S]`: a smoke test of a
deployed fleet (the chart's `helm test` Pod runs it).

Job: call a task by name through the fleet the settings describe (no task code needed:
`Fleet.send`), wait for its result and print it. Contract: exit 0 with the result on
stdout when a worker ran it; 1 with the reason (the task's error, a timeout) otherwise;
2 for bad arguments; errors of fleet's own exit as `fleet` does (3 configuration,
4 connection).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from fleet.app import Fleet
    from fleet.cli import exit_code
    from fleet.errors import FleetError

    parser = argparse.ArgumentParser(prog="python -m fleet.testing.submit")
    parser.add_argument("task", help="the task's full name")
    parser.add_argument("--args", default="[]", help="positional arguments, a JSON array")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    options = parser.parse_args(argv)
    try:
        args = json.loads(options.args)
    except ValueError as exc:
        parser.error(f"--args is not JSON: {exc}")
    if not isinstance(args, list):
        parser.error("--args must be a JSON array")
    app = Fleet()
    try:
        invocation = app.send(options.task, *args)
        print(f"submitted {options.task} as {invocation.id}; waiting", flush=True)
        result = invocation.result(timeout=options.timeout)
    except FleetError as exc:
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:  # the task's own error, re-raised by result()
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()
    print(f"result: {result!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
