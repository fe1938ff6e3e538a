"""The monitor's Starlette app: routes, templates, the shared context, the action guard.

Job: wire the page handlers (`_pages`, `_ops`) to URLs, run their blocking store and
broker calls in the thread pool, render them with the package's Jinja2 templates
(autoescaped), and refuse any POST without a valid CSRF token.

Contract: a page handler is `(Monitor, Request) -> (template name, context)`; an action
handler is `(Monitor, Request, form) -> URL to go back to with a message`. Handlers run
in a worker thread; a `FleetError` or `ValueError` from one becomes a 400 page naming it
(a bad filter, an unknown id), a `_pages.Missing` a 404 page saying what is missing,
never a stack trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fleet.errors import FleetError
from fleet.monitor import _render
from fleet.monitor._auth import Auth, Csrf, Gate
from fleet.monitor._pages import Missing
from fleet.monitor._reader import Reader, ScanReader
from fleet.monitor._reader_sqlite import SQLiteReader
from fleet.state import StateStore
from fleet.state.sqlite import SQLiteStateStore

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger(__name__)
T = TypeVar("T")
HERE = Path(__file__).parent
PageHandler = Callable[["Monitor", Request], tuple[str, dict[str, Any]]]
ActionHandler = Callable[["Monitor", Request, FormData], str]
FormPageHandler = Callable[["Monitor", Request, FormData], tuple[str, dict[str, Any]]]


class Monitor:
    """What every handler needs: the app, the reader, the CSRF key, the templates."""

    def __init__(self, fleet_app: Fleet) -> None:
        self.fleet = fleet_app
        self.csrf = Csrf()
        self._reader: Reader | None = None
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: dict[str, tuple[float, object]] = {}
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters["secretless"] = _render.hide_secrets
        env.filters["idlinks"] = _render.id_links
        env.filters["age"] = _render.age
        env.filters["stamp"] = _render.stamp
        env.globals["csrf"] = self.csrf.token

    def cached(self, key: str, ttl: float, compute: Callable[[], T]) -> T:
        """`compute()`, shared by every viewer for `ttl` seconds: a page polled by many
        browsers costs the store one query set per `ttl`, not one per browser."""
        with self._cache_lock:
            hit = self._cache.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[0] < ttl:
                return hit[1]  # type: ignore[return-value]  # stored by this key's caller
            value = compute()
            self._cache[key] = (now, value)
            return value

    @property
    def reader(self) -> Reader:
        with self._lock:
            if self._reader is None:
                self._reader = reader_for(self.fleet.runtime().state)
            return self._reader


def reader_for(store: StateStore) -> Reader:
    """The fastest reader for `store`: SQL on the embedded store, else a bounded scan."""
    if isinstance(store, SQLiteStateStore):
        return SQLiteReader(store)
    return ScanReader(store)


def page(m: Monitor, handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            name, context = await run_in_threadpool(handler, m, request)
        except Missing as exc:
            text = _render.hide_secrets(str(exc))
            return m.templates.TemplateResponse(
                request, "missing.html", {"missing": text, "message": ""}, status_code=404
            )
        except (FleetError, ValueError) as exc:
            return PlainTextResponse(_render.hide_secrets(f"bad request: {exc}"), 400)
        context.setdefault("message", request.query_params.get("message", ""))
        return m.templates.TemplateResponse(request, name, context)

    return endpoint


def form_page(m: Monitor, handler: FormPageHandler) -> Callable[[Request], Awaitable[Response]]:
    """A page rendered from a POSTed form (the log explorer: pasted text is too long
    for a URL); CSRF-checked like an action, and changes nothing."""

    async def endpoint(request: Request) -> Response:
        form = await request.form()
        if not m.csrf.valid(str(form.get("csrf") or "")):
            return PlainTextResponse("missing or wrong CSRF token", 403)
        name, context = await run_in_threadpool(handler, m, request, form)
        return m.templates.TemplateResponse(request, name, context)

    return endpoint


def action(m: Monitor, handler: ActionHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        form = await request.form()
        offered = str(form.get("csrf") or request.headers.get("x-csrf-token", ""))
        if not m.csrf.valid(offered):
            return PlainTextResponse("missing or wrong CSRF token", 403)
        try:
            target = await run_in_threadpool(handler, m, request, form)
        except (FleetError, ValueError) as exc:
            return PlainTextResponse(_render.hide_secrets(f"refused: {exc}"), 400)
        log.info("monitor action %s: %s", request.url.path, target)
        return RedirectResponse(target, status_code=303)

    return endpoint


def build(fleet_app: Fleet, auth: Auth | None) -> Starlette:
    from fleet.monitor import _metrics, _ops, _pages, _workflows

    m = Monitor(fleet_app)
    pages: Mapping[str, PageHandler] = {
        "/": _pages.overview,
        "/fragments/overview": _pages.overview_live,
        "/invocations": _pages.invocations,
        "/fragments/invocations": _pages.invocation_rows,
        "/invocations/{id}": _pages.detail,
        "/invocations/{id}/{part:str}": _pages.full_value,
        "/timeline": _pages.timeline,
        "/runners": _ops.runners,
        "/queues": _ops.queues,
        "/queues/{name}/dead": _ops.dead_letters,
        "/triggers": _ops.triggers,
        "/workflows": _workflows.runs,
        "/workflows/{run_id}": _workflows.run,
        "/workflows/{run_id}/data/{key:path}": _workflows.full_data,
        "/logs": _ops.logs,
    }
    actions: Mapping[str, ActionHandler] = {
        "/invocations/{id}/cancel": _ops.cancel,
        "/invocations/{id}/retry": _ops.retry,
        "/queues/{name}/requeue": _ops.requeue,
        "/queues/{name}/purge": _ops.purge,
    }
    routes: list[Route | Mount] = [
        Route(path, action(m, fn), methods=["POST"]) for path, fn in actions.items()
    ]
    routes.append(Route("/logs", form_page(m, _ops.resolve_logs), methods=["POST"]))
    routes += [Route(path, page(m, fn), methods=["GET"]) for path, fn in pages.items()]
    routes.append(Route("/metrics", _metrics.endpoint(m), methods=["GET"]))
    routes.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))
    app = Starlette(routes=routes, middleware=[Middleware(Gate, auth=auth or Auth())])
    app.state.monitor = m
    return app
