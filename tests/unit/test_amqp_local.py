"""fleet.broker._amqp_local: notifications to a listener on this host skip RabbitMQ."""

from __future__ import annotations

import pytest

from fleet import _doorbell
from fleet.broker import _amqp_local
from fleet.broker._amqp_local import address, bell, bell_name, deliver

pytestmark = pytest.mark.skipif(
    not _doorbell.abstract_supported(), reason="needs Linux's abstract socket namespace"
)


def test_listener_addresses_of_this_host_name_a_bell() -> None:
    mine = address()
    name = bell_name(mine)
    assert name is not None and mine.endswith(name[1:])
    assert bell_name(address()) != name  # each listener its own


@pytest.mark.parametrize(
    "other",
    [
        "fleet.reply.some-other-host.12.abcdef01",
        "orders",
        "",
        "{prefix}12.ABCDEF01",  # tags are lower-case hex
        "{prefix}12.abcdef0",
        "{prefix}12.abcdef01.x",
        "{prefix}12/x.abcdef01",
        "{prefix}x.abcdef01",
        "{prefix}12345678901.abcdef01",
        "{prefix}12.abcdef01\x00",
    ],
)
def test_other_hosts_and_malformed_addresses_have_no_bell(other: str) -> None:
    assert bell_name(other.format(prefix=_amqp_local._PREFIX)) is None


def test_deliver_rings_the_listeners_bell_and_returns_the_rest_in_order() -> None:
    here, gone, far = address(), address(), "fleet.reply.some-other-host.12.abcdef01"
    ring = bell(here)
    assert ring is not None
    with ring:
        big = b"x" * (_doorbell.MAX_PAYLOAD + 1)
        notes = [(far, b"1"), (here, b"2"), (gone, b"3"), (here, big), (here, b"4")]
        assert deliver(notes) == [(far, b"1"), (gone, b"3"), (here, big)]
        assert ring.wait(5) == [b"2", b"4"]


def test_a_full_bell_leaves_the_rest_to_rabbitmq() -> None:
    here = address()
    ring = bell(here)
    assert ring is not None
    with ring:
        sent = [(here, b"n%d" % i) for i in range(5000)]  # far beyond the kernel's queue
        rest = deliver(sent)
        assert rest, "the kernel took 5,000 datagrams at once"
        taken = [n for n in sent if n not in rest]
        assert taken == sent[: len(taken)]  # the first ones, until it was full
        assert ring.drain() == [payload for _, payload in taken]


def test_switched_off_where_there_is_no_abstract_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_amqp_local, "ENABLED", False)
    here = address()
    assert bell(here) is None
    assert deliver([(here, b"x")]) == [(here, b"x")]
