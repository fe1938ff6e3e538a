"""Trigger definitions and firings in MongoDB, for `MongoStateStore`.

Job: implement `TriggerStore` on the store's `triggers` and `firings` collections (see
`fleet.state.mongo` for the documents).

Contract: `save_trigger` is one upsert by id; `record_firing` one insert whose unique
index `once` on (trigger, key) turns a second firing of a key into a duplicate-key
error, reported as False, however many evaluators race; `triggers` one find on the
index (kind, subject), ordered by (created, id); `delete_trigger` deletes the definition,
then its firings (two commands; a firing recorded in between is deleted as well).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from fleet.state import _mongo_docs as docs
from fleet.triggers import Firing, Kind, TriggerDefinition, TriggerStore, check_kind

Doc = dict[str, Any]
_WATCHING_TASKS = sorted(k.value for k in (Kind.STATUS, Kind.RESULT, Kind.EXCEPTION))


class MongoTriggers(TriggerStore):
    """Mixin for `MongoStateStore`, which provides `_col` and `_errors`."""

    def _col(self, name: str) -> Collection[Doc]:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _errors(self, what: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def save_trigger(self, definition: TriggerDefinition) -> None:
        doc = docs.trigger_doc(definition)
        with self._errors("save_trigger"):
            self._col("triggers").replace_one({"_id": definition.id}, doc, upsert=True)

    def delete_trigger(self, trigger_id: str) -> bool:
        with self._errors("delete_trigger"):
            deleted = self._col("triggers").delete_one({"_id": trigger_id}).deleted_count
            self._col("firings").delete_many({"trigger": trigger_id})
            return bool(deleted)

    def triggers(
        self, kind: Kind | str | None = None, task: str | None = None, event: str | None = None
    ) -> list[TriggerDefinition]:
        wanted = check_kind(kind)
        kinds = {k.value for k in Kind} if wanted is None else {wanted.value}
        flt: Doc = {}
        for subject, allowed in ((task, _WATCHING_TASKS), (event, [Kind.EVENT.value])):
            if subject is not None:
                if flt.get("subject", subject) != subject:
                    return []
                flt["subject"] = subject
                kinds &= set(allowed)
        if not kinds:
            return []
        if len(kinds) < len(Kind):
            flt["kind"] = {"$in": sorted(kinds)}
        with self._errors("triggers"):
            found = self._col("triggers").find(flt, sort=[("created", 1), ("_id", 1)])
            return [docs.trigger_from(d) for d in found]

    def record_firing(self, firing: Firing) -> bool:
        with self._errors("record_firing"):
            try:
                self._col("firings").insert_one(docs.firing_doc(firing, time.time()))
            except DuplicateKeyError:
                return False
            return True

    def firings(self, trigger_id: str, limit: int = 100) -> list[Firing]:
        if limit <= 0:
            return []
        with self._errors("firings"):
            found = self._col("firings").find(
                {"trigger": trigger_id}, sort=[("fired_at", -1), ("key", -1)], limit=limit
            )
            return [docs.firing_from(d) for d in found]
