"""The MongoDB state store on a MongoDB-wire server: schema, fields, large values, errors."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import pytest
from pymongo import MongoClient

from fleet import _values
from fleet.config import Settings
from fleet.errors import ConfigError, StateError
from fleet.state import BLOB_GRACE, Change, ErrorInfo, Expired, InvocationRecord, open_state
from fleet.state._mongo_schema import ttl_indexes
from fleet.state.mongo import MongoStateStore
from fleet.status import HistoryEntry, Status
from fleet.testing._procs import reserve_port

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(300)]
S = Status
T0 = 1_700_000_000.123456
MiB = 1024 * 1024


@pytest.fixture
def open_store(mongo_db_url: str) -> Iterator[type[MongoStateStore]]:
    opened: list[MongoStateStore] = []

    class Opener(MongoStateStore):
        def __init__(self, url: str = mongo_db_url, **options: object) -> None:
            super().__init__(url, **options)
            opened.append(self)

    yield Opener
    for store in opened:
        store.close()


def index_names(store: MongoStateStore) -> dict[str, list[str]]:
    db = store.database()
    return {
        name: sorted(spec["name"] for spec in db[name].list_indexes())
        for name in sorted(db.list_collection_names())
    }


def test_init_is_idempotent_and_creates_everything(open_store: type[MongoStateStore]) -> None:
    store = open_store()
    store.init()
    first = index_names(store)
    store.init()
    open_store().init()  # another process's store on the same database
    assert index_names(store) == first
    assert first == {
        "fleet_blobs": ["_id_", "stored"],
        "fleet_firings": ["_id_", "fired_ttl", "latest", "once"],
        "fleet_invocations": [
            "_id_",
            "call_key",
            "finished_ttl",
            "refs",
            "status_due",
            "status_owner",
            "task_created",
        ],
        "fleet_leases": ["_id_"],
        "fleet_runners": ["_id_", "seen_ttl"],
        "fleet_triggers": ["_id_", "kind_subject"],
    }


def test_ttl_follows_the_configured_retention(open_store: type[MongoStateStore]) -> None:
    store = open_store(retention=3600)
    store.init()
    db = store.database()
    assert ttl_indexes(db, "fleet_invocations") == {"finished_ttl": 3600}
    assert ttl_indexes(db, "fleet_runners") == {"seen_ttl": 3600}
    assert ttl_indexes(db, "fleet_firings") == {"fired_ttl": 3600}
    open_store(retention=7200).init()  # changed in place, not duplicated
    assert ttl_indexes(db, "fleet_invocations") == {"finished_ttl": 7200}
    open_store(retention=0).init()  # keep forever
    assert ttl_indexes(db, "fleet_invocations") == {}


def test_settings_reach_the_store(mongo_db_url: str) -> None:
    store = open_state(mongo_db_url, settings=Settings(connect_timeout=3, retention=600))
    try:
        assert isinstance(store, MongoStateStore)
        assert (store.options.connect_timeout, store.options.retention) == (3.0, 600.0)
        store.init()
        assert ttl_indexes(store.database(), "fleet_invocations") == {"finished_ttl": 600}
    finally:
        store.close()


def test_every_field_round_trips(open_store: type[MongoStateStore]) -> None:
    store = open_store()
    full = InvocationRecord(
        id="inv-full",
        task="pkg.mod.task",
        queue="reports",
        args=b"\x92\x01\xc4\x03\x00\xff\x00",
        codec="json",
        status=S.SUCCESS,
        call_key="k" * 64,
        owner="",
        history=(
            HistoryEntry(S.PENDING, T0, "", "submitted"),
            HistoryEntry(S.RUNNING, T0 + 0.5, "host:1:process:ab", ""),
            HistoryEntry(S.SUCCESS, T0 + 1.000001, "host:1:process:ab", "done"),
        ),
        result=b"\x00result\xff",
        error=ErrorInfo("builtins.ValueError", "bad", "Traceback ...", b"\x91\xa3bad"),
        attempt=3,
        due=T0 + 60.000001,
        parent="inv-parent",
        reply_to="@fleet/abc/l1",
        waits_on=("inv-a", "inv-b"),
        created=T0,
        updated=T0 + 1.000001,
    )
    sparse = InvocationRecord("inv-sparse", "t", "q", b"", "msgpack", S.SCHEDULED)
    store.register([full, sparse])
    assert store.get(["inv-sparse", "inv-full"]) == [sparse, full]
    raw = store.database()["fleet_invocations"].find_one({"_id": "inv-full"})
    assert raw is not None and "finished" in raw  # registered final: the TTL applies
    assert "finished" not in store.database()["fleet_invocations"].find_one({"_id": "inv-sparse"})


def test_finished_is_set_on_entering_a_final_status(open_store: type[MongoStateStore]) -> None:
    store = open_store()
    store.register([InvocationRecord("inv-1", "t", "q", b"", "msgpack", S.PENDING)])
    col = store.database()["fleet_invocations"]
    claim = Change("inv-1", S.RUNNING, frozenset({S.PENDING}), by="w", count_attempt=True)
    assert store.apply([claim]) == [True]
    assert "finished" not in col.find_one({"_id": "inv-1"})
    before = time.time()
    done = Change("inv-1", S.SUCCESS, frozenset({S.RUNNING}), by="w", expect_owner="w")
    assert store.apply([done], at=T0) == [True]  # history time given; retention runs from now
    finished = col.find_one({"_id": "inv-1"})["finished"]
    assert finished.timestamp() >= before - 0.001


def test_a_redrive_leaves_the_ttl_index_nothing_to_delete(
    open_store: type[MongoStateStore],
) -> None:
    store = open_store()
    store.register([InvocationRecord("inv-1", "t", "q", b"", "msgpack", S.FAILED)])
    col = store.database()["fleet_invocations"]
    assert "finished" in col.find_one({"_id": "inv-1"})
    redrive = Change("inv-1", S.PENDING, frozenset({S.FAILED}), redrive=True)
    assert store.apply([redrive]) == [True]
    assert "finished" not in col.find_one({"_id": "inv-1"})


def test_spilled_values_are_kept_while_referenced_then_collected(
    open_store: type[MongoStateStore],
) -> None:
    store = open_store(inline_limit=1024, chunk_size=2048)
    args, result = os.urandom(5000), os.urandom(1500)
    store.register([InvocationRecord("inv-1", "t", "q", args, "msgpack", S.PENDING, created=T0)])
    store.apply([Change("inv-1", S.RUNNING, frozenset({S.PENDING}), by="w")])
    later = time.time() + BLOB_GRACE + 60
    assert store.expire(later, limit=10) == Expired(0, 0)  # the args are still referenced
    store.apply([Change("inv-1", S.SUCCESS, frozenset({S.RUNNING}), by="w", result=result)])
    raw = store.database()["fleet_invocations"].find_one({"_id": "inv-1"})
    assert sorted(raw["refs"]) == sorted([raw["args_ref"], raw["result_ref"]])
    assert store.expire(later, limit=10) == Expired(invocations=1, blobs=2)
    assert store.database()["fleet_blobs"].count_documents({}) == 0  # chunks too


def test_a_20_mb_value_is_chunked_and_stored_once(open_store: type[MongoStateStore]) -> None:
    store = open_store()
    value = os.urandom(1024) * (20 * 1024)  # 20 MiB
    ref_a = _values.externalize(store, value, threshold=1_000_000)
    ref_b = _values.externalize(open_store(), value, threshold=1_000_000)  # a second producer
    assert ref_a == ref_b and _values.is_reference(ref_a)
    blobs = store.database()["fleet_blobs"]
    key = ref_a.decode("latin-1").rpartition(":")[2]
    assert sorted(d["_id"] for d in blobs.find({}, {"_id": 1})) == [
        key,
        f"{key}:0",
        f"{key}:1",
        f"{key}:2",
    ]
    records = [
        InvocationRecord(f"inv-{i}", "t", "q", ref_a, "msgpack", S.PENDING) for i in range(2)
    ]
    store.register(records)
    for record in store.get(["inv-0", "inv-1"]):
        assert _values.resolve(store, record.args) == value


def test_a_half_written_value_is_invisible_then_completed(
    open_store: type[MongoStateStore],
) -> None:
    store = open_store(chunk_size=1024)
    value = os.urandom(3000)
    key = hashlib.blake2b(value, digest_size=20).hexdigest()
    blobs = store.database()["fleet_blobs"]
    blobs.insert_one({"_id": f"{key}:1", "data": value[1024:2048]})  # a writer died here
    assert store.get_blob(key) is None
    store.put_blobs([(key, value)])
    assert store.get_blob(key) == value
    assert blobs.count_documents({}) == 4


def test_oversized_values_leave_the_document(open_store: type[MongoStateStore]) -> None:
    store = open_store(inline_limit=64 * 1024, chunk_size=48 * 1024)
    args = os.urandom(100 * 1024)
    result = os.urandom(200 * 1024)
    store.register(
        [InvocationRecord(f"inv-{i}", "t", "q", args, "msgpack", S.PENDING) for i in (1, 2)]
    )
    store.apply([Change("inv-1", S.RUNNING, frozenset({S.PENDING}), by="w")])
    store.apply([Change("inv-1", S.SUCCESS, frozenset({S.RUNNING}), by="w", result=result)])
    one, two = store.get(["inv-1", "inv-2"])
    assert (one.args, one.result, two.args, two.result) == (args, result, args, None)
    blobs = store.database()["fleet_blobs"]
    assert blobs.count_documents({"chunks": {"$exists": True}}) == 2  # args once, result once
    raw = store.database()["fleet_invocations"].find_one({"_id": "inv-2"})
    assert "args" not in raw and len(raw["args_ref"]) == 40


def test_unreachable_server_names_host_and_timeout_in_time() -> None:
    port = reserve_port()  # reserved, nothing listens on it
    try:
        url = f"mongodb://fleet:s3cr%40t@127.0.0.1:{port.port}/fleet?authSource=admin"
        store = MongoStateStore(url, connect_timeout=1)  # no I/O yet: workers can start
        began = time.monotonic()
        with pytest.raises(StateError) as caught:
            store.get(["inv-1"])
        took = time.monotonic() - began
        store.close()
    finally:
        port.release()
    message = str(caught.value)
    assert f"MongoDB at 127.0.0.1:{port.port} not reachable within 1s" in message
    assert took < 1 + 2.0, f"took {took:.1f}s with connect_timeout=1"
    for text in (message, repr(store), store.url, str(caught.value.__cause__)):
        assert "s3cr" not in text


def _noop() -> None: ...


def test_unreachable_store_fails_the_call_not_the_process(mongo_db_url: str) -> None:
    from fleet import Fleet
    from fleet.broker import memory

    port = reserve_port()
    app = Fleet(
        broker_url="memory://mongo-unreachable",
        state_url=f"mongodb://127.0.0.1:{port.port}/fleet",
        connect_timeout=0.5,
    )

    noop = app.task(_noop)
    try:
        with pytest.raises(
            StateError, match=rf"127\.0\.0\.1:{port.port} not reachable within 0\.5s"
        ):
            noop()
    finally:
        app.close()
        memory.drop("mongo-unreachable")
        port.release()


def test_bad_urls_and_options_are_config_errors(mongo_db_url: str) -> None:
    with pytest.raises(ConfigError, match="port"):
        MongoStateStore("mongodb://127.0.0.1:notaport/fleet")
    with pytest.raises(ConfigError, match="chunk_size"):
        MongoStateStore(mongo_db_url, chunk_size=32 * MiB)
    with pytest.raises(ConfigError, match="prefix"):
        MongoStateStore(mongo_db_url, prefix="no-dashes")
    with pytest.raises(ConfigError, match="connect_timeout"):
        MongoStateStore(mongo_db_url, connect_timeout=0)


def test_fleet_state_init_creates_the_schema(
    mongo_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.broker import memory
    from fleet.cli import main

    monkeypatch.setenv("FLEET__STATE_URL", mongo_db_url)
    monkeypatch.setenv("FLEET__BROKER_URL", "memory://mongo-cli")
    monkeypatch.setenv("FLEET__RETENTION", "120")
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            assert main(["state", "init"]) == 0
    finally:
        memory.drop("mongo-cli")
    assert "state store ready: mongodb://" in out.getvalue()
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_db_url)
    try:  # read with plain pymongo: a store would apply its own retention on first use
        db = client.get_default_database()
        assert ttl_indexes(db, "fleet_invocations") == {"finished_ttl": 120}
    finally:
        client.close()
