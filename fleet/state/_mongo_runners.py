"""Runner heartbeats and leader leases in MongoDB, for `MongoStateStore`.

Job: implement the runner half of `StateStore` (`beat`, `runners`, `forget_runners`,
`lease`, `release`) on the store's `runners` and `leases` collections (see
`fleet.state.mongo` for the documents).

Contract: `beat` of N runners is one unordered `bulk_write` of upserts by id; `runners`
one find ordered by id; `forget_runners` one `delete_many` of those that beat before
`before`. `lease` is one upsert whose filter matches the lease held by `holder` or
expired, by the *server's* clock (`$$NOW`, epoch milliseconds): a duplicate `_id` on
insert means another holder, False; `release` deletes it if `holder` holds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from fleet.errors import StateError
from fleet.state import RunnerRecord
from fleet.state import _mongo_docs as docs

Doc = dict[str, Any]
_NOW_MS = {"$toLong": "$$NOW"}


class MongoRunners:
    """Mixin for `MongoStateStore`, which provides `_col` and `_errors` (it comes before
    `StateStore` among the store's bases, so that its methods are the store's)."""

    def _col(self, name: str) -> Collection[Doc]:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _errors(self, what: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def beat(self, runners: Sequence[RunnerRecord]) -> None:
        if not runners:
            return
        now = time.time()
        requests = [
            ReplaceOne({"_id": r.id}, docs.runner_doc(r, now), upsert=True) for r in runners
        ]
        with self._errors("beat"):
            self._col("runners").bulk_write(requests, ordered=False)

    def runners(self) -> list[RunnerRecord]:
        with self._errors("runners"):
            return [docs.runner_from(d) for d in self._col("runners").find({}, sort=[("_id", 1)])]

    def forget_runners(self, before: float) -> int:
        with self._errors("forget_runners"):
            return int(self._col("runners").delete_many({"beat": {"$lt": before}}).deleted_count)

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        if not holder:
            raise StateError(f"lease {name!r} needs a holder")
        flt = {"_id": name, "$or": [{"holder": holder}, {"$expr": {"$lte": ["$expires", _NOW_MS]}}]}
        update = [{"$set": {"holder": holder, "expires": {"$add": [_NOW_MS, ttl * 1000.0]}}}]
        with self._errors("lease"):
            try:
                self._col("leases").update_one(flt, update, upsert=True)
            except DuplicateKeyError:
                return False  # it exists, and it is someone else's and unexpired
            return True

    def release(self, name: str, holder: str) -> None:
        with self._errors("release"):
            self._col("leases").delete_one({"_id": name, "holder": holder})
