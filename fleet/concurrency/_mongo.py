"""`LimitStore` in MongoDB, beside the state store's collections.

Job: keep lines, rate logs and memos in `<prefix>limit_lines`, `<prefix>limit_rates`
and `<prefix>limit_memos` of the state store's database (pymongo, imported lazily by
`fleet.concurrency.limit_store`).

Contract:
- A line is one document per key (`Line.to_doc()` plus a version `v`, a random token
  never reused: a counter would start again at 1 once an empty line is deleted, and a
  writer holding a read of the deleted line would then overwrite its successor). A
  change reads it, applies the shared rules and writes back only if `v` is unchanged
  (`replace_one({_id, v})`, `delete_one({_id, v})`, or `insert_one` whose duplicate
  `_id` says someone else created it): a compare-and-set, retried on conflict, so
  concurrent writers never both win.
- `take` is one `find_one_and_update` with an update pipeline that computes the
  reservation from the stored log and appends it: one command, atomic on its document.
- `remember` is one `find_one_and_update` (upsert) whose pipeline keeps a live owner and
  replaces a missing or expired one: of racing callers exactly one owns the key (the
  `_id` is the key, unique); `forget` is `delete_one({_id, holder})`.
- pymongo errors leave as `StateError` naming the operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import urandom
from typing import Any, TypeVar

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from fleet.concurrency._options import RateLimit
from fleet.concurrency._store import Grant, LimitStore, Line, Memo, Permits, live
from fleet.errors import StateError

Doc = dict[str, Any]
T = TypeVar("T")
_CAS_TRIES = 10_000


def _version() -> str:
    """A line document's new version token (unique, so a compare-and-set has no ABA)."""
    return urandom(8).hex()


class MongoLimitStore(LimitStore):
    """See the module docstring.

    Args:
        database: returns the connected pymongo database (the state store's `database`).
        prefix: the state store's collection prefix.
    """

    def __init__(self, database: Callable[[], Database[Doc]], prefix: str = "") -> None:
        self._database = database
        self._prefix = prefix

    def _col(self, name: str) -> Collection[Doc]:
        return self._database()[f"{self._prefix}limit_{name}"]

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except PyMongoError as exc:
            raise StateError(f"limit store {what}: {exc}") from exc

    def _change(self, key: str, change: Callable[[Line], T], what: str) -> T:
        col = self._col("lines")
        with self._errors(what):
            for _ in range(_CAS_TRIES):
                doc = col.find_one({"_id": key})
                line = Line.from_doc(doc)
                before = line.to_doc()
                result = change(line)
                after = line.to_doc()
                if after == before or (doc is None and line.empty):
                    return result
                if doc is None:
                    try:
                        col.insert_one({"_id": key, "v": _version(), **after})
                    except DuplicateKeyError:
                        continue
                    return result
                version = doc["v"]
                if line.empty:
                    done = col.delete_one({"_id": key, "v": version}).deleted_count
                else:
                    updated = col.replace_one(
                        {"_id": key, "v": version}, {"v": _version(), **after}
                    )
                    done = updated.matched_count
                if done:
                    return result
        raise StateError(f"limit store {what}: key {key!r} kept changing ({_CAS_TRIES} tries)")

    def acquire(
        self,
        key: str,
        holder: str,
        *,
        limit: int,
        now: float,
        ttl: float = 0.0,
        since: float | None = None,
    ) -> Grant:
        return self._change(
            key, lambda line: line.acquire(holder, limit, now, ttl, since), "acquire"
        )

    def release(self, key: str, holder: str, *, now: float) -> tuple[str, ...]:
        return self._change(key, lambda line: line.release(holder, now), "release")

    def permits(self, key: str, *, now: float) -> Permits:
        with self._errors("permits"):
            return Line.from_doc(self._col("lines").find_one({"_id": key})).permits(now)

    def take(self, key: str, rate: RateLimit, *, now: float) -> float:
        log = {"$ifNull": ["$log", []]}
        nth = {"$arrayElemAt": [log, -rate.count]}
        pipeline: list[Doc] = [
            {
                "$set": {
                    "at": {
                        "$max": [
                            now,
                            {"$ifNull": [{"$last": log}, now]},
                            {
                                "$cond": [
                                    {"$gte": [{"$size": log}, rate.count]},
                                    {"$add": [nth, rate.period]},
                                    now,
                                ]
                            },
                        ]
                    }
                }
            },
            {"$set": {"log": {"$slice": [{"$concatArrays": [log, ["$at"]]}, -rate.count]}}},
        ]
        doc = self._upsert("rates", key, pipeline, "take")
        return float(doc["at"])

    def remember(
        self, key: str, holder: str, *, now: float, ttl: float = 0.0, value: str = ""
    ) -> Memo:
        vacant = {
            "$or": [
                {"$eq": [{"$ifNull": ["$holder", None]}, None]},
                {"$and": [{"$gt": ["$expires", 0]}, {"$lte": ["$expires", now]}]},
            ]
        }
        new = {"holder": holder, "value": value, "at": now, "expires": now + ttl if ttl else 0.0}
        pipeline: list[Doc] = [
            {"$set": {"_vacant": vacant}},
            {
                "$set": {
                    f: {"$cond": ["$_vacant", {"$literal": v}, f"${f}"]} for f, v in new.items()
                }
            },
            {"$unset": "_vacant"},
        ]
        return _memo(self._upsert("memos", key, pipeline, "remember"))

    def _upsert(self, name: str, key: str, pipeline: list[Doc], what: str) -> Doc:
        """One pipeline update of the document `key`, created if missing. Upserts
        racing to create it: one inserts, the others may see a duplicate `_id` and run
        again (as an update of the document just created, unless it was deleted again
        meanwhile: each retry means another caller went through)."""
        with self._errors(what):
            for _ in range(_CAS_TRIES):
                try:
                    doc = self._col(name).find_one_and_update(
                        {"_id": key}, pipeline, upsert=True, return_document=ReturnDocument.AFTER
                    )
                except DuplicateKeyError:
                    continue
                if doc is not None:
                    return doc
        raise StateError(f"limit store {what}: key {key!r} kept changing ({_CAS_TRIES} tries)")

    def recall(self, key: str, *, now: float) -> Memo | None:
        with self._errors("recall"):
            doc = self._col("memos").find_one({"_id": key})
        return live(_memo(doc), now) if doc else None

    def forget(self, key: str, holder: str) -> bool:
        with self._errors("forget"):
            return self._col("memos").delete_one({"_id": key, "holder": holder}).deleted_count == 1

    def purge(self, *, now: float, rates_before: float) -> int:
        with self._errors("purge"):
            memos = self._col("memos").delete_many({"expires": {"$gt": 0, "$lte": now}})
            rates = self._col("rates").delete_many(
                {"$expr": {"$lt": [{"$last": "$log"}, rates_before]}}
            )
        return memos.deleted_count + rates.deleted_count


def _memo(doc: Doc) -> Memo:
    return Memo(doc["_id"], doc["holder"], doc["value"], float(doc["at"]), float(doc["expires"]))
