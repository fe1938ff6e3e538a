"""The Broker contract (fleet.broker), run against every backend in conftest.BROKERS.

Timing assertions only ever bound a wait from above by a wide margin against a slower
path (for example "returned long before the 1 s safety-net poll"), never the speed of a
healthy path, so they cannot flake on a slow machine.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from fleet.broker import URGENT, Broker, Consumer, Delivery, Message
from fleet.errors import ConfigError, PublishError
from fleet.queues import QueueSpec
from tests.processes import spawned


def msgs(queue: str, n: int, prefix: str = "m", priority: int = 0) -> list[Message]:
    return [Message(queue, f"{prefix}{i}".encode(), f"{prefix}{i}", priority) for i in range(n)]


def take(consumer: Consumer, n: int, timeout: float = 10.0) -> list[Delivery]:
    """Receive until `n` deliveries arrived (or the deadline passed)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += consumer.receive(n - len(got), timeout=max(0.0, deadline - time.monotonic()))
    return got


def pass_time(seconds: float) -> None:
    """Let the wall clock move `seconds` past now (for expiry; a few ms at most)."""
    end = time.time() + seconds
    while time.time() <= end:
        pass


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.message.body for d in deliveries]


# -- round trips and order --------------------------------------------------------------


def test_publish_receive_ack_round_trip(broker: Broker, queue: str) -> None:
    sent = Message(queue, b"\x00body\xff", "inv-1", 0, {"trace": "abc"})
    broker.publish([sent])
    with closing(broker.consumer([queue], prefetch=10)) as consumer:
        (got,) = take(consumer, 1)
        assert got.message == sent
        assert got.delivery_count == 1
        consumer.ack([got])
        assert consumer.receive(10, timeout=0.05) == []
    stats = broker.stats(queue)
    assert (stats.ready, stats.dead) == (0, 0)
    assert stats.unacked in (0, -1)  # -1: the backend cannot tell


def test_fifo_order(broker: Broker, queue: str) -> None:
    for message in msgs(queue, 20):
        broker.publish([message])
    with closing(broker.consumer([queue], prefetch=20)) as consumer:
        got = take(consumer, 20)
        assert bodies(got) == [f"m{i}".encode() for i in range(20)]
        consumer.ack(got)


def test_urgent_first(broker: Broker, queue: str) -> None:
    broker.publish(msgs(queue, 3, "n"))
    broker.publish(msgs(queue, 2, "u", priority=URGENT))
    with closing(broker.consumer([queue], prefetch=10)) as consumer:
        got = [d for _ in range(5) for d in take(consumer, 1)]
        assert bodies(got) == [b"u0", b"u1", b"n0", b"n1", b"n2"]
        consumer.ack(got)


def test_one_consumer_on_several_queues(broker: Broker, queue: str) -> None:
    other = f"{queue}-b"
    broker.publish(msgs(queue, 2, "a") + msgs(other, 2, "b"))
    broker.publish(msgs(other, 1, "u", priority=URGENT))
    with closing(broker.consumer([queue, other], prefetch=10)) as consumer:
        got = [d for _ in range(5) for d in take(consumer, 1)]
        assert bodies(got)[0] == b"u0"
        assert sorted(bodies(got)) == [b"a0", b"a1", b"b0", b"b1", b"u0"]
        assert bodies([d for d in got if d.message.queue == queue]) == [b"a0", b"a1"]
        consumer.ack(got)


def test_batch_publish(broker: Broker, queue: str) -> None:
    broker.publish(msgs(queue, 200))
    assert broker.stats(queue).ready == 200
    with closing(broker.consumer([queue], prefetch=50)) as consumer:
        got = take(consumer, 200)
        assert sorted(bodies(got)) == sorted(f"m{i}".encode() for i in range(200))
        consumer.ack(got)
    assert broker.stats(queue).ready == 0


def test_receive_zero_takes_nothing_and_waits_for_wakeup(broker: Broker, queue: str) -> None:
    """A worker without a free slot calls receive(0, t): it must neither take messages
    nor return at once (its loop would spin), and wakeup() must end the wait."""
    broker.publish(msgs(queue, 1))
    with closing(broker.consumer([queue], prefetch=1)) as consumer:
        start = time.monotonic()
        assert consumer.receive(0, timeout=0.2) == []
        assert time.monotonic() - start >= 0.15
        timer = threading.Timer(0.1, consumer.wakeup)
        timer.start()
        try:
            assert consumer.receive(0, timeout=30) == []
        finally:
            timer.cancel()
        assert time.monotonic() - start < 10
    assert broker.stats(queue).ready == 1


def test_unknown_option_is_rejected(broker_target: Any) -> None:
    with pytest.raises(ConfigError, match="no_such_option"):
        broker_target.open(no_such_option=1)


# -- waiting ----------------------------------------------------------------------------


def test_receive_timeout_returns_empty_without_burning_cpu(broker: Broker, queue: str) -> None:
    with closing(broker.consumer([queue], prefetch=1)) as consumer:
        wall, cpu = time.monotonic(), time.thread_time()
        assert consumer.receive(5, timeout=0.5) == []
        wall, cpu = time.monotonic() - wall, time.thread_time() - cpu
    assert wall >= 0.45
    assert cpu < 0.1, f"an idle receive used {cpu:.3f} s of CPU in {wall:.2f} s"


def test_wakeup_from_another_thread_interrupts_receive(broker: Broker, queue: str) -> None:
    with closing(broker.consumer([queue], prefetch=1)) as consumer:
        timer = threading.Timer(0.1, consumer.wakeup)
        start = time.monotonic()
        timer.start()
        try:
            assert consumer.receive(5, timeout=30) == []
        finally:
            timer.cancel()
        assert time.monotonic() - start < 10


def test_publish_wakes_a_waiting_consumer_without_the_safety_net(
    broker: Broker, queue: str
) -> None:
    """The message is published 50 ms into a receive(timeout=5). A push wakeup returns
    in ~50 ms; the embedded brokers' safety-net poll would take >= 1 s. Asserting < 0.9 s
    separates the two without depending on this machine's speed."""
    with closing(broker.consumer([queue], prefetch=1)) as consumer:
        assert consumer.receive(1, timeout=0.01) == []  # registered and idle
        timer = threading.Timer(0.05, lambda: broker.publish(msgs(queue, 1)))
        start = time.monotonic()
        timer.start()
        try:
            got = consumer.receive(1, timeout=5)
        finally:
            timer.join()
        elapsed = time.monotonic() - start
        assert bodies(got) == [b"m0"]
        assert elapsed < 0.9, f"receive took {elapsed:.3f} s: woke by polling, not by push"
        consumer.ack(got)


# -- redelivery and dead letters --------------------------------------------------------


def test_close_without_ack_redelivers(broker: Broker, queue: str) -> None:
    broker.publish(msgs(queue, 1))
    first = broker.consumer([queue], prefetch=1)
    assert [d.delivery_count for d in take(first, 1)] == [1]
    first.close()
    with closing(broker.consumer([queue], prefetch=1)) as second:
        (again,) = take(second, 1)
        assert again.message.body == b"m0"
        assert again.delivery_count == 2
        second.ack([again])


def test_release_redelivers(broker: Broker, queue: str) -> None:
    broker.publish(msgs(queue, 2))
    with closing(broker.consumer([queue], prefetch=2)) as consumer:
        got = take(consumer, 2)
        consumer.release(got[:1])
        (again,) = take(consumer, 1)
        assert (again.message.body, again.delivery_count) == (b"m0", 2)
        consumer.ack([again, got[1]])
    assert broker.stats(queue).ready == 0


def test_visibility_timeout_redelivers(broker_target: Any, queue: str) -> None:
    if broker_target.visibility_option is None:
        pytest.skip(f"{broker_target.name} has no configurable redelivery timeout")
    broker = broker_target.open(**{broker_target.visibility_option: 0.3})
    broker.publish(msgs(queue, 1))
    with (
        closing(broker.consumer([queue], prefetch=1)) as stuck,
        closing(broker.consumer([queue], prefetch=1)) as other,
    ):
        assert [d.delivery_count for d in take(stuck, 1)] == [1]
        (again,) = take(other, 1, timeout=10)
        assert (again.message.body, again.delivery_count) == (b"m0", 2)
        other.ack([again])


def test_delivery_limit_dead_letters(broker: Broker, queue: str) -> None:
    broker.declare([QueueSpec(queue, delivery_limit=2)])
    broker.publish(msgs(queue, 1))
    with closing(broker.consumer([queue], prefetch=1)) as consumer:
        for count in (1, 2):
            (got,) = take(consumer, 1)
            assert got.delivery_count == count
            consumer.release([got])
        assert consumer.receive(1, timeout=0.2) == []
    (letter,) = broker.dead_letters(queue)
    assert letter.body == b"m0"
    assert letter.queue == queue
    assert "delivery limit 2" in letter.reason
    stats = broker.stats(queue)
    assert (stats.ready, stats.dead) == (0, 1)
    assert stats.unacked in (0, -1)


def test_explicit_dead_letter_keeps_reason(broker: Broker, queue: str) -> None:
    broker.publish([Message(queue, b"bad", "inv-bad", 0, {"h": "v"})])
    with closing(broker.consumer([queue], prefetch=1)) as consumer:
        (got,) = take(consumer, 1)
        consumer.dead_letter(got, "unknown task 'x.y'")
    (letter,) = broker.dead_letters(queue)
    assert (letter.queue, letter.body, letter.reason) == (queue, b"bad", "unknown task 'x.y'")
    assert dict(letter.headers) == {"h": "v"}
    assert letter.at > 0
    assert broker.stats(queue).ready == 0


def test_queue_without_dead_lettering_drops(broker: Broker, queue: str) -> None:
    broker.declare([QueueSpec(queue, dead_letter=False)])
    broker.publish(msgs(queue, 1))
    with closing(broker.consumer([queue], prefetch=1)) as consumer:
        (got,) = take(consumer, 1)
        consumer.dead_letter(got, "poison")
        assert consumer.receive(1, timeout=0.05) == []
    assert broker.dead_letters(queue) == []
    assert broker.stats(queue).dead == 0


def test_dead_letters_redrive_and_purge_dead(broker: Broker, queue: str) -> None:
    broker.publish(msgs(queue, 3))
    with closing(broker.consumer([queue], prefetch=3)) as consumer:
        for delivery in take(consumer, 3):
            consumer.dead_letter(delivery, f"why {delivery.message.body.decode()}")
        letters = broker.dead_letters(queue)
        assert [d.body for d in letters] == [b"m0", b"m1", b"m2"]
        assert [d.reason for d in letters] == ["why m0", "why m1", "why m2"]
        assert len(broker.dead_letters(queue, limit=2)) == 2

        assert broker.redrive(queue, [letters[1].id]) == 1
        (back,) = take(consumer, 1)
        assert (back.message.body, back.delivery_count) == (b"m1", 1)
        consumer.dead_letter(back, "again")

        assert broker.redrive(queue) == 3
        assert sorted(bodies(take(consumer, 3))) == [b"m0", b"m1", b"m2"]
    assert broker.dead_letters(queue) == []
    broker.publish(msgs(queue, 2, "x"))
    with closing(broker.consumer([queue], prefetch=2)) as consumer:
        for delivery in take(consumer, 2):
            consumer.dead_letter(delivery, "x")
    assert broker.purge_dead(queue) == 2
    assert broker.dead_letters(queue) == []
    assert broker.stats(queue).dead == 0


def test_message_ttl_dead_letters_expired(broker: Broker, queue: str) -> None:
    broker.declare([QueueSpec(queue, message_ttl=0.002)])
    broker.publish(msgs(queue, 2))
    pass_time(0.002)  # both messages are now past their TTL
    with closing(broker.consumer([queue], prefetch=2)) as consumer:
        assert consumer.receive(2, timeout=0.2) == []
    assert [d.reason for d in broker.dead_letters(queue)] == ["expired", "expired"]


def test_max_length_reject_publish(broker: Broker, queue: str) -> None:
    broker.declare([QueueSpec(queue, max_length=2)])
    broker.publish(msgs(queue, 2))
    with pytest.raises(PublishError, match=queue):
        broker.publish(msgs(queue, 1, "over"))
    assert broker.stats(queue).ready == 2


def test_max_length_drop_head(broker: Broker, queue: str) -> None:
    broker.declare([QueueSpec(queue, max_length=2, overflow="drop-head")])
    broker.publish(msgs(queue, 2))
    broker.publish(msgs(queue, 1, "new"))
    with closing(broker.consumer([queue], prefetch=2)) as consumer:
        assert bodies(take(consumer, 2)) == [b"m1", b"new0"]
    assert [d.body for d in broker.dead_letters(queue)] == [b"m0"]


def test_purge_drops_ready_messages(broker: Broker, queue: str) -> None:
    broker.publish(msgs(queue, 5))
    assert broker.purge(queue) == 5
    assert broker.stats(queue).ready == 0


def test_stats_counts(broker: Broker, queue: str) -> None:
    broker.publish(msgs(queue, 3))
    consumer = broker.consumer([queue], prefetch=1)
    (got,) = take(consumer, 1)
    stats = broker.stats(queue)
    assert (stats.name, stats.ready, stats.consumers, stats.dead) == (queue, 2, 1, 0)
    assert stats.unacked in (1, -1)  # -1: the backend cannot tell
    consumer.dead_letter(got, "testing")
    stats = broker.stats(queue)
    assert (stats.ready, stats.dead) == (2, 1)
    assert stats.unacked in (0, -1)
    consumer.close()
    assert broker.stats(queue).consumers == 0


# -- concurrency ------------------------------------------------------------------------


def test_four_consumer_threads_never_share_a_message(broker: Broker, queue: str) -> None:
    total = 400
    seen: list[bytes] = []
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            with closing(broker.consumer([queue], prefetch=5)) as consumer:
                while not done.is_set():
                    got = consumer.receive(5, timeout=0.2)
                    consumer.ack(got)
                    with lock:
                        seen.extend(bodies(got))
                        if len(seen) >= total:
                            done.set()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for batch in range(0, total, 20):
        broker.publish(msgs(queue, 20, f"b{batch}-"))
    assert done.wait(60), f"only {len(seen)} of {total} messages arrived"
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(seen) == total
    assert len(set(seen)) == total


def _consume_in_child(go: Any, url: str, options: dict[str, Any], queue: str, out: str) -> None:
    from fleet.broker import open_broker

    broker = open_broker(url, **options)
    got: list[str] = []
    deadline = time.monotonic() + 60
    try:
        with closing(broker.consumer([queue], prefetch=10)) as consumer:
            while time.monotonic() < deadline:
                deliveries = consumer.receive(10, timeout=1)
                stops = [d for d in deliveries if d.message.body == b"stop"]
                consumer.release(stops[1:])  # one stop each: hand the others back
                keep = [d for d in deliveries if d not in stops[1:]]
                consumer.ack(keep)
                got += [d.message.body.decode() for d in keep]
                if stops:
                    break
    finally:
        broker.close()
        Path(out).write_text(json.dumps(got))


def test_consumers_in_several_processes_share_the_work(
    broker_target: Any, queue: str, tmp_path: Path
) -> None:
    if not broker_target.cross_process:
        pytest.skip(f"{broker_target.name} lives in one process")
    broker = broker_target.open()
    outs = [tmp_path / f"out{i}.json" for i in range(3)]
    arglists = [(broker_target.url, broker_target.options, queue, str(out)) for out in outs]
    total = 600
    with spawned(_consume_in_child, arglists):  # they start consuming at once
        deadline = time.monotonic() + 60
        while broker.stats(queue).consumers < len(outs) and time.monotonic() < deadline:
            threading.Event().wait(0.02)  # waiting for the children to start consuming
        for batch in range(0, total, 50):
            broker.publish(msgs(queue, 50, f"p{batch}-"))
        broker.publish([Message(queue, b"stop", f"stop{i}") for i in range(len(outs))])
    per_child = [json.loads(out.read_text()) for out in outs]
    work = [body for got in per_child for body in got if body != "stop"]
    assert len(work) == total
    assert len(set(work)) == total
    assert sum(got.count("stop") for got in per_child) == len(outs)


# -- notifications ----------------------------------------------------------------------


def listen_for(listener: Any, n: int, timeout: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += listener.receive(timeout=max(0.0, deadline - time.monotonic()))
    return got


def test_notify_reaches_listener(broker: Broker) -> None:
    with closing(broker.listener()) as listener:
        gone = broker.listener()
        gone_address = gone.address
        gone.close()
        broker.notify([(gone_address, b"lost"), (listener.address, b"hello")])
        broker.notify([(listener.address, b"world")])
        assert listen_for(listener, 2) == [b"hello", b"world"]
        assert listener.receive(timeout=0.05) == []


def test_notify_carries_64_kib(broker: Broker) -> None:
    payload = bytes(range(256)) * 256
    with closing(broker.listener()) as listener:
        broker.notify([(listener.address, payload)])
        assert listen_for(listener, 1) == [payload]


def test_listener_wakeup_from_another_thread(broker: Broker) -> None:
    with closing(broker.listener()) as listener:
        timer = threading.Timer(0.1, listener.wakeup)
        start = time.monotonic()
        timer.start()
        try:
            assert listener.receive(timeout=30) == []
        finally:
            timer.cancel()
        assert time.monotonic() - start < 10


def _notify_from_child(url: str, options: dict[str, Any], address: str) -> None:
    from fleet.broker import open_broker

    broker = open_broker(url, **options)
    try:
        broker.notify([(address, b"from child"), (address, b"x" * 65536)])
    finally:
        broker.close()


def test_notify_across_processes(broker_target: Any) -> None:
    if not broker_target.cross_process:
        pytest.skip(f"{broker_target.name} lives in one process")
    broker = broker_target.open()
    with closing(broker.listener()) as listener:
        proc = multiprocessing.get_context("spawn").Process(
            target=_notify_from_child,
            args=(broker_target.url, broker_target.options, listener.address),
        )
        proc.start()
        try:
            assert listen_for(listener, 2, timeout=60) == [b"from child", b"x" * 65536]
        finally:
            proc.join(60)
        assert proc.exitcode == 0


# -- embedded SQLite specifics (not part of the contract) -------------------------------


def test_sqlite_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.broker.sqlite import SQLiteBroker
    from fleet.state.sqlite import SQLiteStateStore

    monkeypatch.chdir(tmp_path)
    relative = SQLiteBroker("sqlite:///.fleet/fleet.db", visibility_timeout=5)
    absolute = SQLiteStateStore(f"sqlite:///{tmp_path}/deep/er/fleet.db")
    try:
        assert (tmp_path / ".fleet" / "fleet.db").is_file()
        assert (tmp_path / "deep" / "er" / "fleet.db").is_file()
        assert relative.url == "sqlite:///.fleet/fleet.db"
    finally:
        relative.close()
        absolute.close()
    for bad in ("sqlite://", "sqlite:///", "sqlite:///x.db?mode=ro", "sqlite://host/x.db"):
        with pytest.raises(ConfigError, match="sqlite"):
            SQLiteBroker(bad)
    with pytest.raises(ConfigError, match="visibility_timeout"):
        SQLiteBroker("sqlite:///.fleet/fleet.db", visibility_timeout=0)


def test_sqlite_broker_and_state_share_one_file(tmp_path: Path) -> None:
    from fleet.broker.sqlite import SQLiteBroker
    from fleet.state import InvocationRecord
    from fleet.state.sqlite import SQLiteStateStore
    from fleet.status import Status

    url = f"sqlite:///{tmp_path}/fleet.db"
    broker, state = SQLiteBroker(url), SQLiteStateStore(url)
    try:
        state.register([InvocationRecord("i1", "t", "q", b"", "msgpack", Status.PENDING)])
        broker.publish(msgs("q", 1, "warm"))  # reads the queue's spec and consumers (cached)
        before = broker.statements
        broker.publish(msgs("q", 3))
        assert broker.statements - before == 3  # one executemany of three rows
        with closing(broker.consumer(["q"], prefetch=3)) as consumer:
            before = broker.statements
            got = take(consumer, 4)
            consumer.ack(got)
            assert len(got) == 4
            assert broker.statements - before <= 3  # a sweep check, one claim, one ack
        assert [r.id for r in state.get(["i1"])] == ["i1"]
    finally:
        broker.close()
        state.close()
