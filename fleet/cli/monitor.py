"""`fleet monitor`: serve the web monitor of an app with uvicorn.

Contract: loads the app (`--app`, so task names and queues are known), checks the bind
(a non-loopback `--host` without `monitor_token` / `monitor_auth` set is a configuration
error, exit 3, before anything listens), makes sure of the reader's indexes on the
embedded store (a first start over millions of rows builds them, holding the writer
lock for seconds), then serves until interrupted. Needs the
`[monitor]` extra; without it, exit 3 naming the extra.
"""

from __future__ import annotations

import argparse
import logging

from fleet._logging import setup_logging

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    parser = sub.add_parser("monitor", help="serve the web monitor (needs the [monitor] extra)")
    add_app_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fleet.cli import load
    from fleet.monitor import create_app, require
    from fleet.monitor._auth import Auth, check_bind
    from fleet.worker.child import import_task_modules

    require()
    import uvicorn

    app = load(args.app)
    setup_logging(app.settings.log_level, app.settings.log_format)
    auth = Auth.from_settings(app.settings)
    check_bind(args.host, auth)
    import_task_modules(app)
    web = create_app(app, auth)
    web.state.monitor.reader  # noqa: B018  # its indexes now, not on the first page view
    shown = "token" if auth.token else ("basic auth" if auth.user else "no auth (loopback)")
    log.info("fleet monitor on http://%s:%d (%s)", args.host, args.port, shown)
    try:
        uvicorn.run(web, host=args.host, port=args.port, log_level="warning")
    finally:
        app.close()
    return 0
