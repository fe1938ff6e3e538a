"""Delivery tags of the embedded broker.

A message's id is a plain rowid (`fleet.broker._sqlite_schema`): once the newest message
is deleted, the next one published gets its id again. A consumer holding a delivery
whose hold expired (the message went to another consumer, was acked, and a new message
took its id) must never ack, release or dead-letter the new message with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.broker import Delivery, Message, open_broker
from fleet.broker._sqlite_consumer import SQLiteConsumer
from fleet.broker._sqlite_schema import SCHEMA
from fleet.broker.sqlite import SQLiteBroker
from fleet.queues import QueueSpec
from tests.contract.test_broker_contract import take

QUEUE = "tags"


@dataclass
class Reused:
    broker: SQLiteBroker
    holder: SQLiteConsumer
    stale: Delivery
    """The holder's delivery of a message acked meanwhile by another consumer."""
    fresh: Delivery
    """The holder's delivery of a new message with the same id."""
    other: Delivery

    def rows(self) -> list[tuple[str, str | None]]:
        return [
            (r[0], r[1])
            for r in self.broker.db.query(
                "SELECT invocation_id, holder FROM fleet_messages ORDER BY id"
            )
        ]


@pytest.fixture
def reused(tmp_path: Path) -> Iterator[Reused]:
    broker = open_broker(
        f"sqlite:///{tmp_path / 'fleet.db'}", visibility_timeout=0.3, poll_interval=0.05
    )
    assert isinstance(broker, SQLiteBroker)
    broker.declare([QueueSpec(QUEUE)])
    broker.publish([Message(QUEUE, b"old", "inv-old")])
    holder = broker.consumer([QUEUE], 2)
    (stale,) = take(holder, 1)
    with closing(broker.consumer([QUEUE], 1)) as other_consumer:
        (again,) = take(other_consumer, 1)  # once the holder's hold expired
        assert again.delivery_count == 2
        other_consumer.ack([again])
    broker.publish([Message(QUEUE, b"new", "inv-new"), Message(QUEUE, b"other", "inv-other")])
    fresh, other = take(holder, 2)
    assert fresh.tag == stale.tag  # the id came back: the case under test
    yield Reused(broker, holder, stale, fresh, other)
    holder.close()
    broker.close()


def test_a_stale_ack_leaves_the_new_message(reused: Reused) -> None:
    reused.holder.ack([reused.stale])
    holder = reused.holder.id
    assert reused.rows() == [("inv-new", holder), ("inv-other", holder)]
    reused.holder.ack([reused.stale, reused.other])  # several at once: another statement
    assert reused.rows() == [("inv-new", holder)]
    reused.holder.ack([reused.fresh])
    assert reused.rows() == []


def test_a_stale_release_leaves_the_new_message_held(reused: Reused) -> None:
    holder = reused.holder.id
    reused.holder.release([reused.stale])
    reused.holder.release([reused.stale, reused.other])
    assert reused.rows() == [("inv-new", holder), ("inv-other", None)]


def test_a_stale_dead_letter_leaves_the_new_message(reused: Reused) -> None:
    reused.holder.dead_letter(reused.stale, "refused (test)")
    assert reused.rows() == [("inv-new", reused.holder.id), ("inv-other", reused.holder.id)]
    assert reused.broker.dead_letters(QUEUE) == []


def test_a_file_made_with_autoincrement_ids_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as files made before have it
        conn.executescript(
            SCHEMA.replace("id INTEGER PRIMARY KEY,", "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1)
        )
    broker = open_broker(f"sqlite:///{path}")
    broker.declare([QueueSpec(QUEUE)])
    with closing(broker.consumer([QUEUE], 2)) as consumer:
        for round_ in range(2):  # ids are not used again here: 1, 2 then 3, 4
            broker.publish([Message(QUEUE, b"m", f"inv-{round_}-{i}") for i in range(2)])
            got = take(consumer, 2)
            assert [d.tag for d in got] == [2 * round_ + 1, 2 * round_ + 2]
            consumer.ack(got)
    assert broker.stats(QUEUE).ready == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM fleet_messages").fetchone() == (0,)
    broker.close()


def test_many_at_once_in_several_statements(reused: Reused) -> None:
    """More deliveries than one statement matches: one transaction, stale one spared."""
    broker, holder = reused.broker, reused.holder
    broker.publish([Message(QUEUE, b"m", f"inv-{i}") for i in range(120)])
    many = take(holder, 120)
    holder.release([*many[:60], reused.stale])
    assert broker.stats(QUEUE).ready == 60
    holder.ack([reused.stale, *many[60:], reused.other])
    assert reused.rows() == [("inv-new", holder.id)] + [(f"inv-{i}", None) for i in range(60)]
