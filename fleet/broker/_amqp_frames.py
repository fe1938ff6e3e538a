"""Publisher confirms and deliveries decoded straight from a connection's socket data.

Job: decode the frames a connection receives most often without pika: publisher
confirms, and the whole `basic.deliver` messages (method frame, content header frame,
body frames) at the start of the bytes a consumer's socket just gave, so that
`fleet.broker._amqp_link` can hand them over without pika's generic frame dispatch
(frame objects, content assembly, callback lookups: most of the cost of receiving a
small message).

Contract: `confirms(data, channels)` decodes publisher confirms when `data` is nothing
but whole lone `basic.ack` frames on `channels` (else None: pika takes all of it).
`deliveries(data, channels)` returns the messages found, how many bytes of `data` they
used, and whether `data` ended inside what may be one more delivery (the caller keeps
those bytes and tries again with the next read in front of them). Otherwise it stopped
at the first byte that does not start a whole delivery on a channel and consumer tag
in `channels`: a frame of another kind (heartbeat, RPC reply, `basic.cancel`,
publisher confirm), a delivery for a consumer tag not registered (pika rejects those
of cancelled consumers), or anything malformed. Those bytes are for pika to process,
in order: they start where a message ends, so pika's own state (its frame buffer, each
channel's content assembly) is what it would have been had pika read everything.
`lone_frame(data)` says whether they start with a whole frame pika may take on its
own (a heartbeat, a method without content: an RPC reply, `basic.cancel`, a confirm),
after which decoding can go on; else pika takes all the rest. Properties are
decoded by pika's own `BasicProperties.decode` (every AMQP field type of a header
table), from a copy of the properties alone.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

import pika

FRAME_END = 0xCE
_HEAD = struct.Struct(">BHI")
"""Frame type, channel, payload size."""
_CLASS_METHOD = struct.Struct(">HH")
_TAG_FLAGS = struct.Struct(">QB")
_CONTENT = struct.Struct(">HHQ")
"""A content header's class, weight and body size."""

_ACK = struct.Struct(">BHIHHQBB")
"""A `basic.ack` frame: type 1, channel, size 13, class 60, method 80, delivery tag,
flags (bit 0: multiple), frame end 0xCE."""
AckHandler = Callable[[int, bool], None]


def confirms(data: bytes, channels: Mapping[int, AckHandler]) -> list[tuple[int, int, bool]] | None:
    """(channel, delivery tag, multiple) of each frame if `data` is nothing but whole
    `basic.ack` frames on `channels`, else None."""
    size = _ACK.size
    if not data or len(data) % size:
        return None
    found = []
    for offset in range(0, len(data), size):
        kind, channel, length, cls, method, tag, flags, end = _ACK.unpack_from(data, offset)
        if (kind, length, cls, method, end) != (1, 13, 60, 80, 0xCE) or channel not in channels:
            return None
        found.append((channel, tag, bool(flags & 1)))
    return found


DeliverHandler = Callable[[int, bool, pika.BasicProperties, bytes], None]
"""Called with (delivery tag, redelivered, properties, body) of each delivery."""
Delivered = tuple[DeliverHandler, int, bool, pika.BasicProperties, bytes]


def deliveries(
    data: bytes, channels: Mapping[int, Mapping[str, DeliverHandler]]
) -> tuple[list[Delivered], int, bool]:
    """The whole deliveries at the start of `data` for the consumer tags registered in
    `channels` (channel number -> consumer tag -> handler), the bytes they used, and
    whether the bytes after those may be the start of one more (keep them and read on)
    rather than something else (pika's)."""
    found: list[Delivered] = []
    end = len(data)
    pos = 0
    while pos < end:
        got = _one(data, pos, end, channels)
        if isinstance(got, _More):
            return found, pos, True
        if got is None:
            return found, pos, False
        delivered, pos = got
        found.append(delivered)
    return found, pos, False


class _More:
    """`data` ends before the delivery that starts there does."""


_MORE = _More()


def _one(
    data: bytes, pos: int, end: int, channels: Mapping[int, Mapping[str, DeliverHandler]]
) -> tuple[Delivered, int] | _More | None:
    """The delivery that starts at `pos` and where the next frame starts; `_MORE` if
    `data` ends inside what may be one; None if something else starts there."""
    if pos + 11 > end:
        return _MORE if data[pos] == 1 else None
    kind, channel, size = _HEAD.unpack_from(data, pos)
    consumers = channels.get(channel)
    if kind != 1 or consumers is None or size < 11:
        return None
    if _CLASS_METHOD.unpack_from(data, pos + 7) != (60, 60):
        return None
    method_end = pos + 7 + size
    if method_end >= end:
        return _MORE
    if data[method_end] != FRAME_END:
        return None
    at = pos + 11
    length = data[at]
    consumer_tag = data[at + 1 : at + 1 + length].decode("utf-8", "replace")
    handler = consumers.get(consumer_tag)
    if handler is None:
        return None
    at += 1 + length
    if at + 11 > method_end:
        return None
    delivery_tag, flags = _TAG_FLAGS.unpack_from(data, at)
    at += 9
    at += 1 + data[at]  # exchange
    if at >= method_end:
        return None
    at += 1 + data[at]  # routing key
    if at != method_end:
        return None
    pos = method_end + 1
    header = _frame(data, pos, end, 2, channel)
    if not isinstance(header, tuple):
        return header
    start, stop = header
    if stop - start < 14:
        return None
    class_id, _weight, body_size = _CONTENT.unpack_from(data, start)
    if class_id != 60:
        return None
    try:
        props: Any = pika.BasicProperties().decode(data[start + 12 : stop])
    except (struct.error, IndexError, UnicodeDecodeError, ValueError, TypeError):
        return None  # malformed: pika's own dispatch reports it
    pos = stop + 1
    parts: list[bytes] = []
    left = body_size
    while left > 0:
        body = _frame(data, pos, end, 3, channel)
        if not isinstance(body, tuple):
            return body
        start, stop = body
        if stop - start > left:
            return None
        parts.append(data[start:stop])
        left -= stop - start
        pos = stop + 1
    payload = parts[0] if len(parts) == 1 else b"".join(parts)
    return (handler, delivery_tag, bool(flags & 1), props, payload), pos


def _frame(
    data: bytes, pos: int, end: int, kind: int, channel: int
) -> tuple[int, int] | _More | None:
    """(payload start, payload end) of a whole frame of `kind` on `channel` at `pos`;
    `_MORE` if `data` ends first; None if another frame is there."""
    if pos + 7 > end:
        return _MORE if pos == end or data[pos] == kind else None
    got_kind, got_channel, size = _HEAD.unpack_from(data, pos)
    if got_kind != kind or got_channel != channel:
        return None
    stop = pos + 7 + size
    if stop >= end:
        return _MORE
    return (pos + 7, stop) if data[stop] == FRAME_END else None


_PUBLISH_HEAD = struct.Struct(">BHIHHHBB")
"""A `basic.publish` method frame's start: type 1, channel, size, class 60, method 40,
reserved short 0, the empty exchange name, the routing key's length (then the routing
key, the flags octet and the frame end)."""
_HEADER_HEAD = struct.Struct(">BHIHHQ")
"""A content header frame's start: type 2, channel, size, class 60, weight 0, body size."""


def publish_frames(
    channel: int, routing_key: str, body: bytes, properties: bytes, max_body: int
) -> tuple[bytes, int]:
    """The frames of `basic.publish` of `body` to `routing_key` on the default exchange
    (not mandatory), with `properties` already encoded (`b"".join(BasicProperties.encode())`), the
    body cut in frames of at most `max_body` bytes; and how many frames that is. The
    same bytes pika's `Channel.basic_publish` writes."""
    key = routing_key.encode()
    if len(key) > 255:
        raise ValueError(f"routing key longer than 255 bytes: {routing_key[:40]!r}...")
    size = len(body)
    head = _PUBLISH_HEAD.pack(1, channel, 9 + len(key), 60, 40, 0, 0, len(key))
    header = _HEADER_HEAD.pack(2, channel, 12 + len(properties), 60, 0, size)
    if size <= max_body:  # the usual case: one body frame (none for an empty body)
        body_frame = _HEAD.pack(3, channel, size) + body + b"\xce" if size else b""
        return b"".join((head, key, b"\x00\xce", header, properties, b"\xce", body_frame)), (
            3 if size else 2
        )
    parts = [head, key, b"\x00\xce", header, properties, b"\xce"]
    frames = 2
    for start in range(0, size, max_body):
        piece = body[start : start + max_body]
        parts += [_HEAD.pack(3, channel, len(piece)), piece, b"\xce"]
        frames += 1
    return b"".join(parts), frames


_WITH_CONTENT = {(60, 40), (60, 50), (60, 60), (60, 71)}
"""`basic.publish`, `basic.return`, `basic.deliver`, `basic.get-ok`: frames follow."""


def lone_frame(data: bytes) -> int:
    """The size of the whole frame at the start of `data` if pika may process it on its
    own between deliveries (a heartbeat, or a method that carries no content), else 0."""
    if len(data) < 11:
        return 0
    kind, _, size = _HEAD.unpack_from(data, 0)
    stop: int = 7 + size
    if stop >= len(data) or data[stop] != FRAME_END:
        return 0
    if kind == 8 or (kind == 1 and _CLASS_METHOD.unpack_from(data, 7) not in _WITH_CONTENT):
        return stop + 1
    return 0
