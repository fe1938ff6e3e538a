"""The monitor's gate: who may look, and proof that an action came from its own page.

Job: check every request against the configured authentication (a bearer token, or
HTTP basic credentials), refuse to serve a non-loopback address without one, and issue
and check the CSRF tokens that every action (a POST) must carry.

Contract:
- `Auth.from_settings(settings)` reads `monitor_token` and `monitor_auth` (`user:password`);
  both may come from files (`FLEET__MONITOR_TOKEN_FILE`, see `fleet.config`). An empty
  auth lets everyone in, and `check_bind(host, auth)` raises `ConfigError` for it unless
  `host` is a loopback address (127.0.0.0/8, ::1, localhost).
- A request is allowed when it carries the token (`Authorization: Bearer T`, or the
  `fleet_monitor` cookie set after a `?token=T` visit) or matching basic credentials;
  comparisons are constant-time. A refused request gets 401 with a `WWW-Authenticate`
  header (Basic when basic auth is configured, else Bearer) and no page content.
- `csrf_token(secret)` is an HMAC of a per-process random key; `POST` requests without
  the token in the form field `csrf` (or header `X-CSRF-Token`) get 403. GET never
  changes anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from fleet.errors import ConfigError

if TYPE_CHECKING:
    from fleet.config import Settings

COOKIE = "fleet_monitor"


@dataclass(frozen=True, slots=True)
class Auth:
    """Configured credentials; both empty means no authentication."""

    token: str = ""
    user: str = ""
    password: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.user)

    @classmethod
    def from_settings(cls, settings: Settings) -> Auth:
        basic = settings.monitor_auth
        user, sep, password = basic.partition(":")
        if basic and (not sep or not user or not password):
            raise ConfigError("monitor_auth must be 'user:password' (both non-empty)")
        return cls(token=settings.monitor_token, user=user, password=password)

    def allows(self, request: Request) -> bool:
        if not self.enabled:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self.token:
            offered = value if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
            if offered and hmac.compare_digest(_digest(offered), _digest(self.token)):
                return True
        if self.user and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            same_user = hmac.compare_digest(_digest(user), _digest(self.user))
            same_password = hmac.compare_digest(_digest(password), _digest(self.password))
            return same_user and same_password
        return False


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: Auth) -> None:
    """Refuse to listen on `host` when it is reachable from outside and auth is off."""
    if not auth.enabled and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the monitor on {host!r} without authentication: set "
            "monitor_token or monitor_auth (FLEET__MONITOR_TOKEN[_FILE], "
            "FLEET__MONITOR_AUTH[_FILE]) or bind to 127.0.0.1"
        )


class Csrf:
    """CSRF tokens bound to this process's random key (see the module docstring)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def token(self, session: str = "") -> str:
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()

    def valid(self, offered: str, session: str = "") -> bool:
        return bool(offered) and hmac.compare_digest(offered, self.token(session))


class Gate(BaseHTTPMiddleware):
    """Authentication for every path; a `?token=` visit sets the cookie and redirects."""

    def __init__(self, app: object, auth: Auth) -> None:
        super().__init__(app)  # type: ignore[arg-type]  # an ASGI app
        self.auth = auth

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        offered = request.query_params.get("token", "")
        if self.auth.token and offered:
            if not hmac.compare_digest(_digest(offered), _digest(self.auth.token)):
                return _refused(self.auth)
            clean = request.url.remove_query_params("token")
            response = RedirectResponse(str(clean), status_code=303)
            response.set_cookie(COOKIE, offered, httponly=True, samesite="strict")
            return response
        if not self.auth.allows(request):
            return _refused(self.auth)
        return await call_next(request)


def _refused(auth: Auth) -> Response:
    scheme = "Basic" if auth.user else "Bearer"  # Basic makes a browser ask for a password
    return PlainTextResponse(
        "authentication required: a bearer token (or open /?token=...) or basic auth",
        status_code=401,
        headers={"WWW-Authenticate": f'{scheme} realm="fleet monitor"'},
    )
