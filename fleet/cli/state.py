"""`fleet state init|purge`: prepare the state store, or empty it."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fleet.cli import add_app_option

    parser = sub.add_parser("state", help="initialise or purge the state store")
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    init = actions.add_parser("init", help="create tables/collections and indexes")
    add_app_option(init)
    init.set_defaults(handler=init_state)
    purge = actions.add_parser("purge", help="delete every invocation record")
    add_app_option(purge)
    purge.add_argument("--yes", action="store_true", help="really delete")
    purge.set_defaults(handler=purge_state)


def init_state(args: argparse.Namespace) -> int:
    from fleet.cli import load

    app = load(args.app)
    store = app.runtime().state  # opening a store creates its schema idempotently
    init = getattr(store, "init", None)
    if callable(init):  # stores that connect lazily (MongoDB) create it on request
        init()
    print(f"state store ready: {store.url}")
    app.close()
    return 0


def purge_state(args: argparse.Namespace) -> int:
    from fleet.cli import load

    if not args.yes:
        print("refusing to purge without --yes")
        return 1
    app = load(args.app)
    print(f"deleted {app.runtime().state.purge()} invocation(s)")
    app.close()
    return 0
