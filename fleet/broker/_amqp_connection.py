"""The pika connection a `fleet.broker._amqp_link.Link` drives, with fleet's fast paths.

Job: a `SelectConnection` whose outgoing frames wait in `outbox` for the `Link` to
write (one system call for many frames), and whose most frequent incoming frames skip
pika's generic frame dispatch.

Contract:
- Publisher confirms (lone `basic.ack` frames, 21 bytes each) on channels registered
  in `on_ack` are decoded directly and passed to their handler with (delivery tag,
  multiple) (~25 us per frame on the publishing hot path); anything else in the same
  read goes through pika.
- Deliveries for the consumer tags registered in `on_deliver` (channel -> consumer
  tag -> handler of (delivery tag, redelivered, properties, body)) are decoded
  directly (`fleet.broker._amqp_frames`), in the order they arrived: the start of one
  cut by the end of a read is kept for the next; a heartbeat or a method without
  content between them goes to pika alone; anything else, with the rest of the read,
  to pika (from a message boundary: pika's own state stays what it would have been).
  A handler runs inside the I/O loop, like pika's callbacks.
- `publish_transient(channel, notes)` queues the frames of non-persistent publishes
  (result notifications) encoded by fleet (`_amqp_frames.publish_frames`).
- This reads pika internals: it is used only with the pika releases it was tested with
  (`TESTED_PIKA`, `FAST_PATH`), else every frame goes through pika.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import SelectConnection
from pika.channel import Channel

from fleet.broker._amqp_frames import (
    AckHandler,
    DeliverHandler,
    confirms,
    deliveries,
    lone_frame,
    publish_frames,
)

TRANSIENT = pika.BasicProperties(delivery_mode=1)
_TRANSIENT = b"".join(TRANSIENT.encode())

TESTED_PIKA = ("1.4",)
"""pika releases (major.minor) whose internals the fast paths (confirms, deliveries,
frames encoded by fleet) and the direct socket write were tested against
(pyproject.toml pins pika to them; 1.4.4 is in docker/constraints.txt)."""


def fast_path_fits(version: str) -> bool:
    """Whether the fast paths may be used with pika `version` (else pika's own paths:
    slower, and correct whatever pika's internals are)."""
    return ".".join(version.split(".")[:2]) in TESTED_PIKA and all(
        hasattr(SelectConnection, name)
        for name in ("_on_data_available", "_adapter_emit_data", "_adapter_disconnect_stream")
    )


FAST_PATH = fast_path_fits(pika.__version__)
"""Decode publisher confirms and deliveries without pika (see the module docstring).
Off, every frame goes through pika's dispatch; tests turn it off to cover that path."""


class FastConnection(SelectConnection):  # type: ignore[misc]  # pika ships no types here
    """See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.outbox: list[bytes] = []
        self.on_ack: dict[int, AckHandler] = {}
        self.on_deliver: dict[int, dict[str, DeliverHandler]] = {}
        self._carry = b""
        super().__init__(*args, **kwargs)

    def _on_data_available(self, data_in: bytes) -> None:
        if not self._carry:
            if not FAST_PATH or self._frame_buffer:
                super()._on_data_available(data_in)
                return
            if self.on_ack:
                found = confirms(data_in, self.on_ack)
                if found is not None:
                    self.bytes_received += len(data_in)  # what pika's heartbeat checks read
                    self.frames_received += len(found)
                    for channel, tag, multiple in found:
                        self.on_ack[channel](tag, multiple)
                    return
            if not self.on_deliver:
                super()._on_data_available(data_in)
                return
        self.bytes_received += len(data_in)  # less what pika reads again, below
        data, self._carry = self._carry + data_in, b""
        while data:
            delivered, used, more = deliveries(data, self.on_deliver)
            self.frames_received += 3 * len(delivered)  # statistics only
            for handler, tag, redelivered, props, body in delivered:
                handler(tag, redelivered, props, body)
            if more:  # the start of one more delivery: kept for the next read
                self._carry = data[used:]
                return
            data = data[used:]  # starts where a message ends: pika may take it
            size = lone_frame(data) if self.is_open else 0
            pika_takes = data[:size] if size else data  # a frame alone, or all the rest
            data = data[size:] if size else b""
            self.bytes_received -= len(pika_takes)
            super()._on_data_available(pika_takes)

    def publish_transient(self, channel: Channel, notes: Sequence[tuple[str, bytes]]) -> None:
        """Publish each (routing key, body) of `notes` on `channel` to the default
        exchange, not persistent: encoded by fleet (`FAST_PATH`; pika's `basic_publish`
        costs several times more) or by pika."""
        if not FAST_PATH:
            for address, payload in notes:
                channel.basic_publish("", address, bytes(payload), TRANSIENT)
            return
        if not channel.is_open:  # as pika's `basic_publish` checks
            raise pika.exceptions.ChannelWrongStateError("Channel is closed.")
        number, limit = channel.channel_number, self._body_max_length
        for address, payload in notes:
            data, frames = publish_frames(number, address, bytes(payload), _TRANSIENT, limit)
            self.bytes_sent += len(data)  # as pika counts its own frames
            self.frames_sent += frames
            self.outbox.append(data)

    def _adapter_emit_data(self, data: bytes) -> None:
        # pika calls this once per frame (method, header, body: three per publish).
        self.outbox.append(data)
