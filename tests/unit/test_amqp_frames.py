"""fleet.broker._amqp_frames: deliveries and publishes encoded and decoded without pika,
checked against pika's own frame codec (the bytes RabbitMQ sends and expects)."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pika
import pytest
from pika import frame, spec

from fleet.broker._amqp_frames import FRAME_END, deliveries, lone_frame, publish_frames

HEADERS: dict[str, Any] = {
    # Every field type fleet's messages carry, and the others pika encodes (no floats).
    "x-fleet-prior": 3,
    "x-delivery-count": 2**40,
    "x-fleet-reason": "delivery limit 20 exceeded: é",
    "x-fleet-signature": b"\x00\xffsig",
    "negative": -5,
    "flag": True,
    "off": False,
    "price": decimal.Decimal("12.34"),
    "at": datetime.datetime(2026, 12, 6, 2, 0, 0),
    "nested": {"a": 1, "b": ["x", 2, None]},
    "list": [1, "two", b"3"],
    "nothing": None,
}
PROPS = pika.BasicProperties(
    content_type="application/msgpack",
    content_encoding="identity",
    headers=HEADERS,
    delivery_mode=2,
    priority=7,
    correlation_id="0123456789abcdef",
    reply_to="fleet.reply.vm.1.abc",
    expiration="60000",
    message_id="m-1",
    timestamp=1_700_000_000,
    type="invocation",
    user_id="guest",
    app_id="fleet",
)
MAX_BODY = 4088  # frame_max 4096 (RabbitMQ's smallest) less the frame's 8 bytes


def delivery(
    tag: int,
    body: bytes,
    props: pika.BasicProperties = PROPS,
    consumer: str = "ctag-1",
    channel: int = 1,
    redelivered: bool = False,
) -> bytes:
    """One delivery as RabbitMQ sends it, framed by pika's own encoder."""
    method = spec.Basic.Deliver(consumer, tag, redelivered, "exchange", "routing.key")
    parts = [
        frame.Method(channel, method).marshal(),
        frame.Header(channel, len(body), props).marshal(),
    ]
    for start in range(0, len(body), MAX_BODY):
        parts.append(frame.Body(channel, body[start : start + MAX_BODY]).marshal())
    return b"".join(parts)


def handler(*_: Any) -> None:
    pass


CHANNELS = {1: {"ctag-1": handler, "ctag-2": handler}}


def decoded(data: bytes) -> list[tuple[int, bool, dict[str, Any], bytes]]:
    """(delivery tag, redelivered, properties, body) of the deliveries in `data`."""
    found, _, _ = deliveries(data, CHANNELS)
    return [(tag, again, vars(props), body) for _, tag, again, props, body in found]


def test_many_deliveries_in_one_read_with_every_header_field_type() -> None:
    bodies = [b"", b"x", b"y" * 300, bytes(range(256)) * 40]  # the last: 3 body frames
    data = b"".join(delivery(i + 1, b, redelivered=i % 2 == 1) for i, b in enumerate(bodies))
    found, used, more = deliveries(data, CHANNELS)
    assert (used, more) == (len(data), False)
    assert [(tag, again, body) for _, tag, again, _, body in found] == [
        (1, False, b""),
        (2, True, b"x"),
        (3, False, b"y" * 300),
        (4, True, bytes(range(256)) * 40),
    ]
    # What pika's own dispatch would hand over (a datetime comes back without
    # microseconds, a large int as pika's `long`, ...).
    _, header = frame.decode_frame(frame.Header(1, 0, PROPS).marshal())
    assert isinstance(header, frame.Header)
    for _, _, _, props, _ in found:
        assert vars(props) == vars(header.properties)
        assert props.headers == header.properties.headers
        assert props.headers["x-fleet-reason"] == HEADERS["x-fleet-reason"]
        assert type(props.headers["x-fleet-signature"]) is bytes


def test_properties_left_out_stay_none() -> None:
    bare = pika.BasicProperties(correlation_id="c")
    [(_, _, props, body)] = decoded(delivery(9, b"body", bare))
    assert body == b"body"
    assert props["correlation_id"] == "c"
    assert props["headers"] is None and props["priority"] is None


def test_a_read_cut_anywhere_gives_the_whole_deliveries_before_the_cut() -> None:
    messages = [delivery(1, b"a" * 10), delivery(2, b"b" * 9000), delivery(3, b"c")]
    data = b"".join(messages)
    ends = [sum(len(m) for m in messages[: i + 1]) for i in range(len(messages))]
    for cut in range(len(data) + 1):
        found, used, more = deliveries(data[:cut], CHANNELS)
        whole = [end for end in ends if end <= cut]
        assert used == (whole[-1] if whole else 0), cut
        assert more == (used < cut), cut  # the start of the next one: kept, not pika's
        assert [tag for _, tag, *_ in found] == list(range(1, len(whole) + 1)), cut
        # Kept and read again with the rest in front: the deliveries that were cut off.
        rest, rest_used, more = deliveries(data[used:], CHANNELS)
        assert [tag for _, tag, *_ in rest] == list(range(len(whole) + 1, 4)), cut
        assert (used + rest_used, more) == (len(data), False)


def test_the_rest_of_a_read_starts_where_a_message_ends() -> None:
    heartbeat = frame.Heartbeat().marshal()
    ack = frame.Method(1, spec.Basic.Ack(5)).marshal()
    cancel = frame.Method(1, spec.Basic.Cancel("ctag-1")).marshal()
    first, second = delivery(1, b"one"), delivery(2, b"two")
    for other in (heartbeat, ack, cancel, heartbeat[:3], cancel[:9]):
        found, used, more = deliveries(first + other + second, CHANNELS)
        assert [tag for _, tag, *_ in found] == [1]
        assert (used, more) == (len(first), False)  # the rest, in order, is pika's
        if len(other) < 10:  # a frame cut short: pika's if it is not a delivery's
            assert deliveries(first + other, CHANNELS)[1:] == (len(first), other[0] == 1)


@pytest.mark.parametrize(
    "data",
    [
        delivery(1, b"x", consumer="ctag-9"),  # a consumer tag not registered (cancelled)
        delivery(1, b"x", channel=2),  # a channel not registered
        delivery(1, b"x")[:-1] + b"\x00",  # no frame end on the last body frame
        frame.Header(1, 1, PROPS).marshal() + frame.Body(1, b"x").marshal(),  # no method
        frame.Body(1, b"x").marshal(),  # the end of a message pika started
        b"\x08",  # the start of a heartbeat
        b"",
    ],
)
def test_what_is_not_a_whole_registered_delivery_is_left_to_pika(data: bytes) -> None:
    assert deliveries(data, CHANNELS) == ([], 0, False)


def test_pika_takes_heartbeats_and_methods_without_content_alone() -> None:
    cancel = frame.Method(1, spec.Basic.Cancel("ctag-1")).marshal()
    consume_ok = frame.Method(1, spec.Basic.ConsumeOk("ctag-1")).marshal()
    heartbeat = frame.Heartbeat().marshal()
    after = delivery(1, b"x")
    for alone in (cancel, consume_ok, heartbeat):
        assert lone_frame(alone + after) == len(alone)
        assert lone_frame(alone[:-1]) == 0  # cut: pika takes all the rest
    # A delivery pika must assemble (its consumer not registered) takes the rest along.
    assert lone_frame(delivery(1, b"x", consumer="ctag-9") + after) == 0
    assert lone_frame(frame.Body(1, b"x").marshal()) == 0


def test_the_start_of_a_delivery_is_kept_for_the_next_read() -> None:
    whole = delivery(4, b"x" * 10_000)
    for cut in (1, 7, 11, 30, len(whole) - 1):
        assert deliveries(whole[:cut], CHANNELS) == ([], 0, True), cut
    assert [tag for _, tag, *_ in deliveries(whole, CHANNELS)[0]] == [4]


def test_frames_of_the_wrong_type_are_left_to_pika() -> None:
    method = frame.Method(1, spec.Basic.Deliver("ctag-1", 1, False, "", "q")).marshal()
    header = frame.Header(1, 1, PROPS).marshal()
    body = frame.Body(1, b"x").marshal()
    assert len(decoded(method + header + body)) == 1
    as_body = frame.Body(1, header[7:-1]).marshal()  # a header's payload, typed as body
    assert deliveries(method + as_body + body, CHANNELS) == ([], 0, False)
    as_header = header[:7] + b"x" + header[8:]  # a header with a bad class
    assert deliveries(method + header + bytes([2]) + body[1:], CHANNELS) == ([], 0, False)
    assert deliveries(method + as_header, CHANNELS) == ([], 0, False)


def test_a_body_longer_than_announced_is_left_to_pika() -> None:
    method = frame.Method(1, spec.Basic.Deliver("ctag-1", 1, False, "", "q")).marshal()
    header = frame.Header(1, 2, PROPS).marshal()
    assert deliveries(method + header + frame.Body(1, b"xyz").marshal(), CHANNELS) == ([], 0, False)
    assert FRAME_END == frame.Body(1, b"").marshal()[-1]


def test_the_handler_of_each_consumer_tag_is_returned() -> None:
    def other(*_: Any) -> None:
        pass

    channels = {1: {"ctag-1": handler, "ctag-2": other}}
    data = delivery(1, b"a") + delivery(2, b"b", consumer="ctag-2")
    found, _, _ = deliveries(data, channels)
    assert [h for h, *_ in found] == [handler, other]


@pytest.mark.parametrize("size", [0, 1, 60, MAX_BODY, MAX_BODY + 1, 3 * MAX_BODY + 5])
@pytest.mark.parametrize("key", ["fleet.reply.vm.1.abc", "é" * 30])
def test_publish_frames_are_the_bytes_pika_writes(size: int, key: str) -> None:
    body = bytes(i % 251 for i in range(size))
    props = pika.BasicProperties(delivery_mode=1)
    expected = [
        frame.Method(5, spec.Basic.Publish(exchange="", routing_key=key)).marshal(),
        frame.Header(5, size, props).marshal(),
    ]
    expected += [frame.Body(5, body[s : s + MAX_BODY]).marshal() for s in range(0, size, MAX_BODY)]
    data, frames = publish_frames(5, key, body, b"".join(props.encode()), MAX_BODY)
    assert data == b"".join(expected)
    assert frames == len(expected)


def test_a_routing_key_longer_than_a_short_string_is_refused() -> None:
    with pytest.raises(ValueError, match="255 bytes"):
        publish_frames(1, "k" * 256, b"x", b"", MAX_BODY)
