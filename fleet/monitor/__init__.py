"""The fleet monitor: a web UI over a fleet's state store, broker and triggers.

Job: serve server-rendered pages (overview, invocations, invocation detail, timeline,
runners, queues and dead letters, triggers, log explorer) with small live fragments
refreshed by htmx (vendored in `static/`: the UI needs no internet access), and the
operator's actions (cancel, retry, requeue, purge). `fleet monitor` runs it with uvicorn.

Contract:
- `create_app(fleet_app, auth=...)` returns a Starlette ASGI app. It reads only public
  ports: the state store (through `fleet.monitor._reader` for pages of invocations),
  the broker's stats and dead letters, and the trigger store. It needs no hook.
- Every request passes `fleet.monitor._auth.Gate`; every action is a POST carrying the
  CSRF token of the page it came from; nothing is changed by a GET.
- No secret is rendered: URLs are shown redacted, free text goes through
  `_render.hide_secrets`, and settings named in `fleet.config.SECRETS` are never shown.
- `/metrics` is Prometheus text from `fleet.monitor._metrics.render` (the store's counts;
  a metrics extension may add its own registry there).
- Needs the `[monitor]` extra (starlette, jinja2, uvicorn, python-multipart);
  `require()` names it when missing.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from fleet.errors import ConfigError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from fleet.app import Fleet
    from fleet.monitor._auth import Auth


def require() -> None:
    """Raise `ConfigError` naming the extra when the web stack is not installed."""
    missing = [
        m
        for m in ("starlette", "jinja2", "uvicorn", "multipart")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ConfigError(
            f"the monitor needs {', '.join(missing)}: pip install 'fleet-tasks[monitor]'"
        )


def create_app(fleet_app: Fleet, auth: Auth | None = None) -> Starlette:
    """The monitor's ASGI app for `fleet_app` (see the module docstring)."""
    require()
    from fleet.monitor._web import build

    return build(fleet_app, auth)


__all__ = ["create_app", "require"]
