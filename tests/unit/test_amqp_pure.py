"""The pure parts of the RabbitMQ broker: queue arguments, mismatch parsing, dead-letter
reasons, URL parsing and scrubbing (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleet.broker._amqp_params import parse, scrub
from fleet.broker._amqp_queues import (
    arguments,
    mismatch_error,
    parse_inequivalent,
    reason_of,
    user_headers,
)
from fleet.errors import ConfigError
from fleet.queues import QueueSpec


def test_arguments_of_a_quorum_queue() -> None:
    spec = QueueSpec("jobs", delivery_limit=5, message_ttl=1.5, max_length=10)
    assert arguments(spec) == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 4,  # RabbitMQ allows limit + 1 deliveries
        "x-dead-letter-exchange": "jobs.dlx",
        "x-message-ttl": 1500,
        "x-max-length": 9,  # a quorum queue accepts one past its limit
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
    }
    assert arguments(QueueSpec("q", message_ttl=0.0001))["x-message-ttl"] == 1
    drop = arguments(QueueSpec("q", max_length=10, overflow="drop-head"))
    assert (drop["x-max-length"], drop["x-overflow"]) == (10, "drop-head")
    assert "x-dead-letter-strategy" not in drop


def test_arguments_of_a_classic_priority_queue_without_dead_letters() -> None:
    spec = QueueSpec("p", type="classic", max_priority=5, dead_letter=False, delivery_limit=3)
    assert arguments(spec) == {"x-queue-type": "classic", "x-max-priority": 5}


def test_quorum_reject_publish_dlx_is_refused() -> None:
    with pytest.raises(ConfigError, match="reject-publish-dlx"):
        arguments(QueueSpec("q", max_length=1, overflow="reject-publish-dlx"))


@pytest.mark.parametrize(
    ("text", "arg", "ours", "theirs"),
    [
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' in vhost "
            "'/': received '5' but current is '20'",
            "x-delivery-limit",
            5,
            20,
        ),
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
            "received none but current is the value '1000' of type 'signedint'",
            "x-message-ttl",
            None,
            1000,
        ),
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'a.b' in vhost "
            "'/': received the value 'classic' of type 'longstr' but current is the value "
            "'quorum' of type 'longstr'",
            "x-queue-type",
            "classic",
            "quorum",
        ),
    ],
)
def test_parse_inequivalent(text: str, arg: str, ours: object, theirs: object) -> None:
    diff = parse_inequivalent(text)
    assert diff is not None
    assert (diff.arg, diff.ours, diff.theirs) == (arg, ours, theirs)


def test_parse_inequivalent_ignores_other_errors() -> None:
    assert parse_inequivalent("NOT_FOUND - no queue 'q' in vhost '/'") is None


def test_mismatch_error_speaks_in_settings() -> None:
    spec = QueueSpec("q", delivery_limit=7, message_ttl=60)
    first = parse_inequivalent(
        "inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': "
        "received '6' but current is '4'"
    )
    second = parse_inequivalent(
        "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received the value "
        "'60000' of type 'signedint' but current is none"
    )
    assert first is not None and second is not None
    text = str(mismatch_error("q", [first, second], spec))
    assert "delivery_limit: configured 7, on the broker 5" in text
    assert "message_ttl: configured 60.0, on the broker nothing (absent)" in text
    assert "rabbitmqctl delete_queue q" in text and "fleet queues declare" in text


def test_dead_letter_reasons() -> None:
    spec = QueueSpec("q", delivery_limit=3, max_length=5, overflow="drop-head")
    when = datetime(2025, 1, 2, tzinfo=UTC)

    def death(reason: str, queue: str = "q") -> dict[str, object]:
        return {"x-death": [{"reason": reason, "queue": queue, "time": when}]}

    specs = {"q": spec}.get
    assert reason_of(death("expired"), specs, "q") == ("expired", "q", when.timestamp())
    assert reason_of(death("delivery_limit", "q.urgent"), specs, "q")[:2] == (
        "delivery limit 3 exceeded",
        "q",
    )
    assert reason_of(death("delivery_limit", "other"), specs, "q")[0] == "delivery limit exceeded"
    assert reason_of(death("maxlen"), specs, "q")[0] == "max length 5 exceeded (dropped from head)"
    explicit = {"x-fleet-reason": "unknown task 'x'", "x-fleet-queue": "q", "x-fleet-at": "12.5"}
    assert reason_of(explicit, specs, "q") == ("unknown task 'x'", "q", 12.5)
    assert reason_of(None, specs, "q")[0] == "dead-lettered (no reason recorded)"


def test_user_headers_drop_bookkeeping() -> None:
    headers = {"trace": b"abc", "x-death": [], "x-delivery-count": 2, "x-fleet-prior": 1}
    assert user_headers(headers) == {"trace": "abc"}


def test_url_parsing_and_scrubbing() -> None:
    endpoint = parse("amqp://bob:p%40ss%2Fw@mq.example:5673/prod?heartbeat=15", {})
    params = endpoint.params
    assert (params.host, params.port, params.virtual_host, params.heartbeat) == (
        "mq.example",
        5673,
        "prod",
        15,
    )
    assert params.credentials.password == "p@ss/w"
    assert endpoint.url == "amqp://bob:***@mq.example:5673/prod?heartbeat=15"
    assert scrub("failed for p@ss/w and p%40ss%2Fw", "p@ss/w") == "failed for *** and ***"
    assert parse("amqp://h", {}).params.virtual_host == "/"
    assert parse("amqp://h/%2F", {}).params.virtual_host == "/"
    with pytest.raises(ConfigError, match="unknown option"):
        parse("amqp://h", {"visibility_timeout": 1})
    with pytest.raises(ConfigError, match="publish_timeout must be > 0"):
        parse("amqp://h", {"publish_timeout": 0})
    with pytest.raises(ConfigError, match="amqp:// or amqps://"):
        parse("http://h", {})


def test_publisher_confirms_are_decoded_without_pika_only_when_whole() -> None:
    from pika import frame, spec

    from fleet.broker._amqp_frames import confirms

    def ack(channel: int, tag: int, multiple: bool = False) -> bytes:
        return bytes(frame.Method(channel, spec.Basic.Ack(tag, multiple)).marshal())

    handlers = {1: lambda tag, multiple: None, 3: lambda tag, multiple: None}
    assert confirms(ack(1, 7), handlers) == [(1, 7, False)]
    assert confirms(ack(1, 2**40) + ack(3, 9, True), handlers) == [(1, 2**40, False), (3, 9, True)]
    nack = bytes(frame.Method(1, spec.Basic.Nack(7)).marshal())
    heartbeat = bytes(frame.Heartbeat().marshal())
    for data in (
        ack(2, 7),  # a channel nobody registered
        ack(1, 7) + nack,  # anything else goes through pika, with what came along
        ack(1, 7) + heartbeat,
        ack(1, 7)[:-1],  # a partial frame
        ack(1, 7)[:-1] + b"\x00",  # no frame end
        b"",
    ):
        assert confirms(data, handlers) is None, data


def test_a_cluster_url_names_every_node_and_fails_over() -> None:
    endpoint = parse("amqp://u:s3cret@a:5673,b,[::1]:5674/prod?heartbeat=5", {})
    assert endpoint.hosts == (("a", 5673), ("b", 5672), ("::1", 5674))
    assert (endpoint.params.host, endpoint.params.port) == ("a", 5673)
    assert endpoint.params.virtual_host == "prod" and endpoint.params.heartbeat == 5
    assert "s3cret" not in endpoint.url
    assert endpoint.candidates()[0] == ("a", 5673)
    endpoint.failed(("a", 5673))  # lost: the next connection tries the next node first
    assert endpoint.candidates() == [("b", 5672), ("::1", 5674), ("a", 5673)]
    assert endpoint.failing_over(10.0)
    endpoint.worked(("::1", 5674))
    assert endpoint.candidates()[0] == ("::1", 5674)
    named = endpoint.with_name("x", ("b", 5672))
    assert (named.host, named.port, named.virtual_host) == ("b", 5672, "prod")
    assert named.credentials.password == "s3cret"


def test_a_single_host_url_has_one_candidate() -> None:
    endpoint = parse("amqp://u:p@a:5673/", {})
    assert endpoint.hosts == () and endpoint.candidates() == [("a", 5673)]
    endpoint.failed(("a", 5673))
    assert not endpoint.failing_over(10.0)  # one node: no leader election to wait for


@pytest.mark.parametrize("url", ["amqp://u:p@a,,b/", "amqp://u:p@a,b:notaport/"])
def test_a_bad_host_list_names_the_culprit(url: str) -> None:
    with pytest.raises(ConfigError, match="host"):
        parse(url, {})
