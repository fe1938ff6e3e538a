"""Collections and indexes of the MongoDB state store, created idempotently.

Job: name the collections of one store (a prefix, `fleet_` by default, then a fixed
suffix) and make sure their indexes exist, with the configured retention on the TTL
indexes, without disturbing a store that is already in use.

Contract: `ensure(db, names, retention)` may run any number of times, from any number
of processes at once: `createIndexes` of an existing index is a no-op, and a TTL index
whose `expireAfterSeconds` differs from `retention` is changed in place with `collMod`
(never dropped and rebuilt). `retention` 0 keeps finished invocations forever: the TTL
indexes are dropped. See `fleet.state.mongo` for the documents themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, OperationFailure

_INDEX_CONFLICTS = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict


@dataclass(frozen=True, slots=True)
class Names:
    """The collection names of one store."""

    invocations: str
    runners: str
    leases: str
    blobs: str
    triggers: str
    firings: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Names:
        return cls(*(prefix + suffix for suffix in SUFFIXES))


SUFFIXES = ("invocations", "runners", "leases", "blobs", "triggers", "firings")

INDEXES: dict[str, list[IndexModel]] = {
    "invocations": [
        # The leader's due releases and stale-pending republishes: status IN (...), due < t.
        IndexModel([("status", ASCENDING), ("due", ASCENDING)], name="status_due"),
        # Recovery: RUNNING/PAUSED by owner (or not by the live owners).
        IndexModel([("status", ASCENDING), ("owner", ASCENDING)], name="status_owner"),
        IndexModel([("call_key", ASCENDING)], name="call_key"),
        IndexModel([("task", ASCENDING), ("created", ASCENDING)], name="task_created"),
        # Blob collection: is a blob still referenced? Only invocations with blobs.
        IndexModel([("refs", ASCENDING)], name="refs", sparse=True),
    ],
    # Blob collection: headers stored long ago (chunks have no `stored`).
    "blobs": [IndexModel([("stored", ASCENDING)], name="stored", sparse=True)],
    "triggers": [IndexModel([("kind", ASCENDING), ("subject", ASCENDING)], name="kind_subject")],
    "firings": [
        IndexModel([("trigger", ASCENDING), ("key", ASCENDING)], name="once", unique=True),
        IndexModel([("trigger", ASCENDING), ("fired_at", DESCENDING)], name="latest"),
    ],
}
TTL: dict[str, tuple[str, str]] = {
    # collection suffix: (index name, Date field)
    "invocations": ("finished_ttl", "finished"),
    "runners": ("seen_ttl", "seen"),
    "firings": ("fired_ttl", "fired"),
}


def ensure(db: Database[Any], names: Names, retention: float) -> None:
    """Create every index (and collection) of the store; set TTLs to `retention`.

    Many processes start at once on a fresh database; a creation that loses a race
    with an equal one (a server may report the namespace or index being built
    elsewhere) is simply tried again.
    """
    for attempt in range(3):
        try:
            _ensure(db, names, retention)
            return
        except OperationFailure:
            if attempt == 2:
                raise


def _ensure(db: Database[Any], names: Names, retention: float) -> None:
    for suffix, models in INDEXES.items():
        db[getattr(names, suffix)].create_indexes(models)
    for suffix, (index, key) in TTL.items():
        set_ttl(db, getattr(names, suffix), index, key, retention)
    for suffix in ("leases", "blobs"):  # _id only; created so `init` shows them all
        try:
            db.create_collection(getattr(names, suffix))
        except CollectionInvalid:
            pass  # it exists (pymongo checks first)
        except OperationFailure as exc:
            if exc.code != 48:  # NamespaceExists: another process created it meanwhile
                raise


def set_ttl(db: Database[Any], collection: str, index: str, key: str, retention: float) -> None:
    """Make the TTL index `index` on `key` expire documents `retention` seconds on."""
    seconds = round(retention)
    if seconds <= 0:
        if index in ttl_indexes(db, collection):
            db[collection].drop_index(index)
        return
    try:
        db[collection].create_index([(key, ASCENDING)], name=index, expireAfterSeconds=seconds)
    except OperationFailure as exc:
        if exc.code not in _INDEX_CONFLICTS:
            raise
        db.command("collMod", collection, index={"name": index, "expireAfterSeconds": seconds})


def ttl_indexes(db: Database[Any], collection: str) -> dict[str, int]:
    """TTL index name -> expireAfterSeconds, for one collection."""
    return {
        spec["name"]: int(spec["expireAfterSeconds"])
        for spec in db[collection].list_indexes()
        if "expireAfterSeconds" in spec
    }
