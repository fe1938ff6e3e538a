"""The MongoDB settings fleet runs a replica set with (README "Running on a RabbitMQ
cluster and a MongoDB replica set"): write concern majority, retryable writes and
reads, primary reads; settings that would break its guarantees are refused by name.

The client checks need no server (pymongo connects lazily); the last test runs a claim
and a commit through a store on the MongoDB-wire test server with those settings."""

from __future__ import annotations

import pytest
from pymongo import ReadPreference

from fleet.errors import ConfigError
from fleet.state._mongo_conn import Options, client_for
from fleet.state.mongo import MongoStateStore

RS = "mongodb://fleet:pw@m1:27017,m2:27017,m3:27017/fleet?replicaSet=rs0&authSource=admin"


def test_a_replica_set_url_gets_majority_retryable_primary() -> None:
    client = client_for(RS, Options())
    try:
        assert client.write_concern.document == {"w": "majority"}
        assert client.options.retry_writes and client.options.retry_reads
        assert client.read_preference == ReadPreference.PRIMARY
        assert client.options.replica_set_name == "rs0"
        database = client.get_default_database()
        assert database.name == "fleet" and database.write_concern.document["w"] == "majority"
    finally:
        client.close()


def test_an_explicit_write_concern_in_the_url_wins() -> None:
    client = client_for(RS + "&w=2&journal=true", Options())
    try:
        assert client.write_concern.document == {"w": 2, "j": True}
    finally:
        client.close()


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("w=0", "w=0"),
        ("retryWrites=false", "retryWrites=false"),
        ("readPreference=secondaryPreferred", "readPreference='secondaryPreferred'"),
        ("readPreference=nearest", "readPreference='nearest'"),
    ],
)
def test_settings_that_break_guarantees_are_refused_by_name(setting: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        MongoStateStore(f"{RS}&{setting}")
    assert "pw" not in str(caught.value)  # the password never shows


@pytest.mark.mongo
def test_claims_and_commits_run_with_majority_writes(mongo_db_url: str) -> None:
    from fleet.state import Change, InvocationRecord
    from fleet.status import Status

    store = MongoStateStore(mongo_db_url)
    try:
        assert store.database().write_concern.document == {"w": "majority"}
        store.register(
            [
                InvocationRecord(
                    id="i1", task="t", queue="q", args=b"", codec="msgpack", status=Status.PENDING
                )
            ]
        )
        claim = Change("i1", Status.RUNNING, frozenset({Status.PENDING}), by="w1")
        assert store.apply([claim]) == [True]
        assert store.apply([claim]) == [False]  # the compare-and-set holds
        done = Change("i1", Status.SUCCESS, frozenset({Status.RUNNING}), result=b"r")
        assert store.apply([done]) == [True]
        assert store.get(["i1"])[0].status is Status.SUCCESS
    finally:
        store.close()
