"""Why a RabbitMQ connection could not be opened, in words an operator can act on.

Job: unwrap pika's connection-workflow exceptions down to the error underneath
(`root_cause`) and word it with the host, user and vhost concerned (`connect_reason`):
connection refused, timed out, host not found, authentication failed, access refused,
TLS, closed by the server. Contract: never raises; the caller scrubs the text
(`Endpoint.scrub`) before it reaches a log line or an error message.
"""

from __future__ import annotations

import socket
import ssl

import pika.exceptions
from pika.adapters.utils.connection_workflow import (
    AMQPConnectionWorkflowFailed,
    AMQPConnectorPhaseErrorBase,
    AMQPConnectorStackTimeout,
)

from fleet.broker._amqp_params import Endpoint


def root_cause(exc: BaseException) -> BaseException:
    """The error under pika's wrappers (workflow failed -> connector phase -> OSError)."""
    for _ in range(8):
        inner: object = None
        if isinstance(exc, AMQPConnectionWorkflowFailed) and exc.exceptions:
            inner = exc.exceptions[-1]
        elif isinstance(exc, AMQPConnectorPhaseErrorBase):
            inner = exc.exception
        elif isinstance(exc, pika.exceptions.AMQPConnectionError) and len(exc.args) == 1:
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            return exc
        exc = inner
    return exc


def connect_reason(
    exc: BaseException, endpoint: Endpoint, host: tuple[str, int] | None = None
) -> str:
    """Why a connection (to `host`, default the first) could not be opened, in words an
    operator can act on."""
    name, port = host or (endpoint.params.host, endpoint.params.port)
    where = f"{name}:{port}"
    user = endpoint.params.credentials.username
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused (nothing listens on {where}: is RabbitMQ running?)"
    if isinstance(exc, (socket.timeout, TimeoutError, AMQPConnectorStackTimeout)):
        return f"timed out (no answer from {where} within {endpoint.options.connect_timeout:g}s)"
    if isinstance(exc, socket.gaierror):
        return f"host name {name!r} not found ({exc.strerror or exc})"
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError) or (
        isinstance(exc, pika.exceptions.ConnectionClosedByBroker) and exc.reply_code == 403
    ):
        return f"authentication failed for user {user!r} ({exc})"
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        vhost = endpoint.params.virtual_host
        return f"access refused: user {user!r} may not use virtual host {vhost!r} ({exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, pika.exceptions.ConnectionClosed):
        return f"closed by the server: {exc.reply_code} {exc.reply_text}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror.lower()} ({where})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
