"""The embedded default writes a submit's record and message in one SQLite commit
(`fleet._colocated`); other layouts keep the usual path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fleet import Fleet, StateError, Status


def _square(x: int) -> int:
    return x * x


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


def _app(tmp_path: Path, queues: str = "", split: bool = False) -> tuple[Fleet, Path]:
    db = tmp_path / "fleet.db"
    url = f"sqlite:///{db}"
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}" if split else url
    options: dict[str, object] = {}
    if queues:
        (tmp_path / "queues.yaml").write_text(queues)
        options["queues_file"] = str(tmp_path / "queues.yaml")
    return Fleet(broker_url=broker_url, state_url=url, **options), db


def test_record_and_message_commit_together(tmp_path: Path) -> None:
    app, db = _app(tmp_path)
    square = app.task(_square)
    runtime = app.runtime()
    runtime.declare([app.queues.route(square.name, square.options.queue)])
    state_tx, broker_tx = runtime.state.transactions, runtime.broker.transactions
    handles = [square(1), square(2)]
    handles += square.parallelize([(3,), (4,)]).invocations
    # One commit per call, in the state store's connection; none by the broker.
    assert runtime.state.transactions - state_tx == 3
    assert runtime.broker.transactions == broker_tx
    ids = [h.id for h in handles]
    messages = _rows(db, "SELECT invocation_id FROM fleet_messages ORDER BY id")
    assert [m[0] for m in messages] == ids
    for record in runtime.state.get(ids):
        # The message is durable with the record: no recovery deadline to republish by.
        assert record.status is Status.PENDING and record.due is None
    app.close()


def test_failing_message_insert_rolls_the_record_back(tmp_path: Path) -> None:
    app, db = _app(tmp_path)
    square = app.task(_square)
    app.runtime()  # creates the tables
    with sqlite3.connect(db) as conn:  # the message's insert fails, inside the file
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON fleet_messages"
            " BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )
    with pytest.raises(StateError, match="injected"):
        square(7)
    # Neither the record nor the message was committed: nothing is left to run, and
    # there was no moment when the record existed without its message.
    assert _rows(db, "SELECT id FROM fleet_invocations") == []
    assert _rows(db, "SELECT id FROM fleet_messages") == []
    app.close()


def test_limited_queue_takes_the_broker_path(tmp_path: Path) -> None:
    app, db = _app(tmp_path, "queues:\n  tiny:\n    max_length: 5\n")
    square = app.task(queue="tiny")(_square)
    runtime = app.runtime()
    runtime.declare(["tiny"])
    broker_tx = runtime.broker.transactions
    handle = square(3)
    assert runtime.broker.transactions > broker_tx  # the broker's own limited publish
    (record,) = runtime.state.get([handle.id])
    assert record.due is not None  # a deadline until the follow-up clears it
    assert len(_rows(db, "SELECT id FROM fleet_messages WHERE queue = 'tiny'")) == 1
    app.close()


def test_separate_files_take_the_usual_path(tmp_path: Path) -> None:
    app, db = _app(tmp_path, split=True)
    square = app.task(_square)
    handle = square(3)
    runtime = app.runtime()
    (record,) = runtime.state.get([handle.id])
    assert record.status is Status.PENDING and record.due is not None
    assert _rows(db, "SELECT name FROM sqlite_master WHERE name = 'fleet_messages'") == []
    broker_db = tmp_path / "broker.db"
    assert _rows(broker_db, "SELECT invocation_id FROM fleet_messages") == [(handle.id,)]
    app.close()
