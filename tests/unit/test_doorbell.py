"""fleet._doorbell: push wakeups over Unix datagram sockets."""

from __future__ import annotations

import gc
import os
import re
import threading
import time
from collections.abc import Iterator

import pytest

from fleet import _doorbell
from fleet._doorbell import MAX_PAYLOAD, OVERSIZE, Doorbell, Outcome, ring, send, unique_name

MODES = [True, False] if _doorbell.abstract_supported() else [False]


@pytest.fixture(params=MODES, ids=lambda abstract: "abstract" if abstract else "filesystem")
def bell(request: pytest.FixtureRequest) -> Iterator[Doorbell]:
    with Doorbell("/tmp/some/fleet.db", unique_name("t"), abstract=request.param) as bell:
        yield bell


def test_address_names_the_namespace_hash() -> None:
    with Doorbell("/a/fleet.db", "x1") as one, Doorbell("/a/fleet.db", "x2") as two:
        same = re.fullmatch(r"(?:@fleet|/.+)/([0-9a-f]{12})/x1", one.address)
        assert same is not None
        assert same.group(1) in two.address
    with Doorbell("/b/fleet.db", "x1") as other:
        assert same.group(1) not in other.address


def test_names_are_checked() -> None:
    with pytest.raises(ValueError, match="name"):
        Doorbell("ns", "a/b")
    with pytest.raises(ValueError, match="too long"):
        Doorbell("ns", "n" * 200)


def test_unique_names_differ() -> None:
    assert len({unique_name("c") for _ in range(100)}) == 100


def test_ring_wakes_wait_with_payload(bell: Doorbell) -> None:
    assert ring(bell.address, b"one")
    assert ring(bell.address, b"two")
    assert ring(bell.address)  # a plain ring carries nothing
    assert bell.wait(5) == [b"one", b"two"]
    assert bell.wait(0) == []


def test_plain_ring_ends_the_wait_early(bell: Doorbell) -> None:
    timer = threading.Timer(0.05, lambda: ring(bell.address))
    start = time.monotonic()
    timer.start()
    try:
        assert bell.wait(30) == []
    finally:
        timer.join()
    assert time.monotonic() - start < 10


def test_wakeup_from_another_thread(bell: Doorbell) -> None:
    timer = threading.Timer(0.05, bell.wakeup)
    start = time.monotonic()
    timer.start()
    try:
        assert bell.wait(None) == []
    finally:
        timer.join()
    assert time.monotonic() - start < 10
    for _ in range(10_000):  # piles of wakeups never block or raise
        bell.wakeup()
    assert bell.wait(0) == []


def test_wait_times_out_idle(bell: Doorbell) -> None:
    wall, cpu = time.monotonic(), time.thread_time()
    assert bell.wait(0.3) == []
    assert time.monotonic() - wall >= 0.28
    assert time.thread_time() - cpu < 0.05


def test_ring_to_nobody_is_false_and_gone() -> None:
    bell = Doorbell("ns", unique_name("t"))
    address = bell.address
    bell.close()
    bell.close()  # idempotent
    bell.wakeup()  # harmless after close
    assert ring(address, b"x") is False
    assert send(address) is Outcome.GONE
    assert send("/nonexistent/dir/sock") is Outcome.GONE
    assert send("memory:not-a-socket") is Outcome.GONE
    assert send("@" + "x" * 300) is Outcome.GONE


def test_full_receiver_refuses_without_raising(bell: Doorbell) -> None:
    outcomes = [send(bell.address, b"p") for _ in range(5000)]
    assert outcomes[0] is Outcome.SENT
    assert Outcome.FULL in outcomes  # the kernel queue is bounded
    sent = outcomes.count(Outcome.SENT)
    assert len(bell.wait(0)) == sent
    assert ring(bell.address, b"after")
    assert bell.wait(1) == [b"after"]


def test_patience_rides_out_a_burst(bell: Doorbell) -> None:
    while send(bell.address, b"fill") is Outcome.SENT:
        pass
    drainer = threading.Timer(0.01, bell.drain)
    drainer.start()
    try:
        assert send(bell.address, b"late", patience=5) is Outcome.SENT
    finally:
        drainer.join()
    assert bell.wait(1)[-1] == b"late"


def test_64_kib_payload_and_oversize_marker(bell: Doorbell) -> None:
    big = os.urandom(MAX_PAYLOAD)
    assert ring(bell.address, big)
    assert bell.wait(5) == [big]
    assert ring(bell.address, big + b"!")
    assert bell.wait(5) == [OVERSIZE]


def test_filesystem_socket_is_removed_on_close() -> None:
    bell = Doorbell("ns", unique_name("t"), abstract=False)
    assert os.path.exists(bell.address)
    bell.close()
    assert not os.path.exists(bell.address)


def test_rings_from_many_threads_and_their_sockets_close(bell: Doorbell) -> None:
    def ringer(i: int) -> None:
        send(bell.address, str(i).encode(), patience=5)

    got: list[bytes] = []
    for start in range(0, 40, 8):  # batches stay under the kernel's queue length
        threads = [threading.Thread(target=ringer, args=(i,)) for i in range(start, start + 8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        got += bell.wait(0)
    del threads
    gc.collect()  # a thread's sending socket is closed with it: no ResourceWarning
    assert sorted(int(p) for p in got) == list(range(40))


def test_pid_alive() -> None:
    assert _doorbell.pid_alive(os.getpid())
    assert not _doorbell.pid_alive(0)
    assert not _doorbell.pid_alive(2**22 + 12345)
