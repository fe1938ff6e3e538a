"""One AMQP connection, driven synchronously by the thread that owns it.

Job: give the RabbitMQ broker's publishers, consumers and listeners a small blocking
API over pika's asynchronous `SelectConnection`, so that they can pipeline (publish a
batch, then wait for its confirms; ack many deliveries with one frame) without the
one-round-trip-per-call cost of pika's `BlockingConnection`, and without an I/O thread
of their own (no hand-off latency on the hot path).

Contract:
- A `Link` belongs to one thread at a time; only `wake()` may be called from others.
  pika's I/O loop runs only inside `drive()` (and the calls built on it), in the
  owner's thread, the way `BlockingConnection` runs it (`IOLoop.poll()` then
  `process_timeouts()`), so heartbeats are answered whenever the owner drives.
- `drive(until, timeout)` processes I/O until `until()` is true (True) or the timeout
  passes (False); an interruptible drive also ends (False) after a `wake()` from any
  thread. It blocks in the kernel, never spins. A lost connection raises `LinkError`.
- Outgoing frames (publishes, acks, RPCs) wait in an outbox until the owner sends
  them: `send()`, `pump()`, `flush()` and every round of `drive()` write the whole
  outbox with one `send()` on the socket when pika has nothing queued (else through
  pika's transport, which keeps the order). pika itself writes each frame of a
  message separately and only after a poll round that reports the socket writable:
  three system calls, two epoll changes and up to three TCP segments (each a wake-up of
  RabbitMQ's reader) per publish, where one does.
- `call(channel, "queue_declare", name, ...)` runs one AMQP RPC (the pika `Channel`
  method of that name, with `callback=` added) and returns its reply frame. A channel
  the broker closes (NOT_FOUND, PRECONDITION_FAILED, ...) raises `ChannelError` with
  the broker's code and text; the `Link` stays usable (open another channel).
- Publisher confirms and deliveries skip pika's generic frame dispatch where pika's
  internals are the tested ones (`fleet.broker._amqp_connection`).
- `close()` never raises and always releases the socket and the I/O loop.
- Every error text passes through `Endpoint.scrub`: no credentials in messages.
- A connection that cannot be opened raises `LinkError` naming the reason (connection
  refused, timed out, host not found, authentication failed, access refused, TLS)
  with the underlying error as its `__cause__`.
- Several hosts (a cluster, see `Endpoint.candidates`): the link tries them in turn
  within its connect timeout and raises only when none opens (naming each one's
  reason); `host` is the node it is connected to. A link that is lost or refused marks
  its host failed, so the next link of the process tries another node first.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from fleet.broker._amqp_connection import FastConnection
from fleet.broker._amqp_params import Endpoint
from fleet.broker._amqp_reasons import connect_reason, root_cause
from fleet.errors import BrokerError
from fleet.errors import ChannelError as ChannelError  # noqa: PLC0414  # re-exported
from fleet.errors import LinkError as LinkError  # noqa: PLC0414  # re-exported

log = logging.getLogger(__name__)
_MAX_WAIT = 5.0
"""pika's own bound on one poll (`_PollerBase._MAX_POLL_TIMEOUT`)."""


def _noop() -> None:
    pass


_POLL_EVERY = 1.0
"""Most seconds `pump` and `flush` go without reading the socket (heartbeats)."""


class Link:
    """A connection to RabbitMQ; see the module docstring."""

    def __init__(self, endpoint: Endpoint, name: str, timeout: float | None = None) -> None:
        self.endpoint = endpoint
        self.name = name
        limit = endpoint.options.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        hosts = endpoint.candidates()
        failures: list[LinkError] = []
        for index, host in enumerate(hosts):
            left = deadline - time.monotonic()
            if index and left <= 0:
                break
            self.host = host
            try:
                # The last host may use what is left; the others their share of it.
                self._open(host, left if index == len(hosts) - 1 else left / (len(hosts) - index))
            except LinkError as exc:
                endpoint.failed(host)
                failures.append(exc)
                continue
            endpoint.worked(host)
            return
        if len(failures) == 1:
            raise failures[0]
        error = LinkError(
            f"cannot connect to any host of {endpoint.url}: "
            + "; ".join(str(e).removeprefix("cannot connect to ") for e in failures)
        )
        error.__cause__ = failures[-1].__cause__
        raise error

    def _open(self, host: tuple[str, int], limit: float) -> None:
        self.error: LinkError | None = None
        self.last_used = time.monotonic()
        self._opened = False
        self._closing = False
        self._woken = False
        self._closed_channels: dict[int, BaseException] = {}
        self.ioloop = IOLoop()
        self.ioloop.activate_poller()
        self.connection = FastConnection(
            self.endpoint.with_name(self.name, host),
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
            custom_ioloop=self.ioloop,
        )
        try:
            if not self.drive(lambda: self._opened, limit):
                raise LinkError(f"connecting to {self._where} timed out after {limit:.1f}s")
        except BaseException:
            self.close(0.5)
            raise

    @property
    def _where(self) -> str:
        """The URL, or the host of it this link uses when the URL names several."""
        if not self.endpoint.hosts:
            return self.endpoint.url
        name, port = self.host
        shown = f"[{name}]" if ":" in name else name
        return f"{shown}:{port} of {self.endpoint.url}"

    # -- pika's callbacks (they run inside drive) --------------------------------------

    def _on_open(self, _connection: object) -> None:
        self._opened = True

    def _on_open_error(self, _connection: object, exc: BaseException) -> None:
        cause = root_cause(exc)
        reason = self.endpoint.scrub(connect_reason(cause, self.endpoint, self.host))
        self.error = LinkError(f"cannot connect to {self._where}: {reason}")
        self.error.__cause__ = cause

    def _on_close(self, _connection: object, exc: BaseException) -> None:
        if self.error is None:
            if self._opened and not self._closing:
                self.endpoint.failed(self.host)
            self.error = LinkError(f"connection to {self._where} lost: {self._describe(exc)}")

    def _on_channel_close(self, channel: Channel, exc: BaseException) -> None:
        self._closed_channels[channel.channel_number] = exc

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, pika.exceptions.ConnectionClosed):
            text = f"{exc.reply_code} {exc.reply_text}"
        elif isinstance(exc, pika.exceptions.AMQPConnectionError) and exc.args:
            text = " ".join(str(a) for a in exc.args)
        else:
            text = f"{type(exc).__name__}: {exc}"
        return self.endpoint.scrub(text)

    # -- driving ------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.error is None and bool(self.connection.is_open)

    def drive(
        self, until: Callable[[], bool], timeout: float | None, interruptible: bool = False
    ) -> bool:
        """Process I/O until `until()` or the timeout; see the module docstring."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ioloop = self.ioloop
        outbox = self.connection.outbox
        polled = False  # even a zero timeout processes what is ready once
        while True:
            if outbox:
                self.send()
            if until():
                return True
            if self.error is not None:
                raise self.error
            if interruptible and self._woken:
                self._woken = False
                return False
            wait = _MAX_WAIT
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    if polled:
                        return False
                    wait = 0.0
            polled = True
            if wait >= _MAX_WAIT:  # pika's poll returns within _MAX_WAIT by itself
                ioloop.poll()
                ioloop.process_timeouts()
            else:
                handle = ioloop.call_later(wait, _noop)  # bounds the poll
                try:
                    ioloop.poll()
                    ioloop.process_timeouts()
                finally:
                    ioloop.remove_timeout(handle)
            self.last_used = time.monotonic()

    def send(self) -> None:
        """Write the outbox now, in one system call when the socket takes it all."""
        connection = self.connection
        outbox = connection.outbox
        if not outbox:
            return
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        # pika has no public way to write to its socket; its transport is the one
        # place that knows the socket and keeps the byte order, so it gets whatever
        # the direct write leaves (and meets any socket error, then closes the link).
        transport = connection._transport
        if transport is None:
            return  # the connection is gone: pika reports it through `_on_close`
        sock = getattr(transport, "_sock", None)
        if (
            type(sock) is socket.socket  # not TLS: an SSL socket has its own rules
            and transport.get_write_buffer_size() == 0
        ):
            try:
                sent = sock.send(data)
            except OSError:  # would block, or broken: the transport takes over
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def pump(self) -> None:
        """Send the outbox without waiting; read the socket if it was not read lately."""
        self.send()
        if self.error is not None:
            raise self.error
        if time.monotonic() - self.last_used > _POLL_EVERY:
            self.drive(lambda: False, 0.0)

    def flush(self, timeout: float) -> bool:
        """Drive until every buffered frame is written (acks, notifications)."""
        connection = self.connection
        self.pump()
        # pika offers no public way to know that its transport wrote everything;
        # BlockingConnection relies on this same adapter method.
        done = self.drive(
            lambda: (
                self.error is not None
                or (not connection.outbox and connection._get_write_buffer_size() == 0)
            ),
            timeout,
        )
        if self.error is not None:
            raise self.error
        return done

    def wake(self) -> None:
        """Make the owner's interruptible `drive` return now. Safe from any thread."""
        try:
            self.ioloop.add_callback_threadsafe(self._set_woken)
        except Exception:  # the loop is closed: nobody drives it any more
            log.debug("wake-up of a closed link ignored", exc_info=True)

    def _set_woken(self) -> None:
        self._woken = True

    # -- channels and RPCs --------------------------------------------------------------

    def channel(self) -> Channel:
        """Open a channel (its closing reason is kept for `call` and `closed_reason`)."""
        box: list[Channel] = []
        self.connection.channel(on_open_callback=box.append)
        timeout = self.endpoint.options.connect_timeout
        if not self.drive(lambda: bool(box), timeout):
            raise LinkError(f"opening a channel on {self.endpoint.url} timed out")
        channel = box[0]
        channel.add_on_close_callback(self._on_channel_close)
        return channel

    def closed_reason(self, channel: Channel) -> BrokerError:
        """Why `channel` was closed, as an error to raise."""
        exc = self._closed_channels.get(channel.channel_number)
        if isinstance(exc, pika.exceptions.ChannelClosed):
            return ChannelError(exc.reply_code, self.endpoint.scrub(exc.reply_text))
        if self.error is not None:
            return self.error
        return LinkError(self.endpoint.scrub(f"channel closed: {exc}"))

    def call(
        self, channel: Channel, method: str, *args: Any, timeout: float | None = None, **kw: Any
    ) -> Any:
        """Run the RPC `channel.<method>(*args, **kw, callback=...)`; return its reply."""
        if channel.is_closed:
            raise self.closed_reason(channel)
        box: list[Any] = []
        getattr(channel, method)(*args, callback=box.append, **kw)
        limit = timeout or self.endpoint.options.connect_timeout
        if not self.drive(lambda: bool(box) or channel.is_closed, limit):
            raise LinkError(f"{self.endpoint.url} did not answer {method} within {limit:.1f}s")
        if box:
            return box[0]
        raise self.closed_reason(channel)

    # -- closing ------------------------------------------------------------------------

    def close(self, timeout: float = 2.0) -> None:
        """Close gracefully (RabbitMQ requeues unacked deliveries), then free the loop.

        Never raises; a connection that does not close in time is dropped.
        """
        connection = self.connection
        self._closing = True
        try:
            if not (connection.is_closed or connection.is_closing):
                connection.close()
            if not self._settle(timeout):
                # No Close-Ok in time: tear the socket down without the handshake.
                connection._adapter_disconnect_stream()
                self._settle(1.0)
        except Exception:
            log.debug("%s: close failed", self.name, exc_info=True)
        finally:
            if self.error is None:
                self.error = LinkError(f"connection to {self.endpoint.url} closed")
            self.ioloop.close()

    def _settle(self, timeout: float) -> bool:
        try:
            return self.drive(lambda: bool(self.connection.is_closed), timeout)
        except LinkError:
            return bool(self.connection.is_closed)
