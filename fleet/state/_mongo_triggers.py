"""Trigger definitions, firings and composite hits in MongoDB, for `MongoStateStore`.

Job: implement `TriggerStore` on the store's `triggers` and `firings` collections (see
`fleet.state.mongo` for the documents) and a `<triggers>_hits` collection of its own.

Contract: `save_trigger` is one upsert by id; `record_firing` one insert whose unique
index `once` on (trigger, key) turns a second firing of a key into a duplicate-key
error, reported as False, however many evaluators race; `triggers` one find on the
index (kind, subject), ordered by (created, id); `delete_trigger` deletes the definition,
then its firings and hits (a firing recorded in between is deleted as well).
`settle_firing` is one update; `pending_firings` one find on the index `pending`
(pending, fired_at). Hits live in `<triggers collection>_hits` with the unique index
`once` on (trigger, part, key). The indexes this module adds (`pending`, and those of
the hits collection) are created here, once per store object, on first use: the
schema module (`_mongo_schema`) does not know them yet.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from bson import Binary
from pymongo import ASCENDING, IndexModel
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from fleet.state._mongo_docs import date
from fleet.triggers import (
    Firing,
    Hit,
    Kind,
    TriggerDefinition,
    TriggerStore,
    check_kind,
    condition_from,
    condition_params,
)

Doc = dict[str, Any]
_WATCHING_TASKS = sorted(k.value for k in (Kind.STATUS, Kind.RESULT, Kind.EXCEPTION))


class MongoTriggers(TriggerStore):
    """Mixin for `MongoStateStore`, which provides `_col` and `_errors`."""

    _trigger_indexes_ready = False

    def _col(self, name: str) -> Collection[Doc]:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _errors(self, what: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _hits(self) -> Collection[Doc]:
        triggers = self._col("triggers")
        hits = triggers.database[triggers.name + "_hits"]
        if not self._trigger_indexes_ready:
            self._col("firings").create_indexes(
                [IndexModel([("pending", ASCENDING), ("fired_at", ASCENDING)], name="pending")]
            )
            hits.create_indexes(
                [
                    IndexModel(
                        [("trigger", ASCENDING), ("part", ASCENDING), ("key", ASCENDING)],
                        name="once",
                        unique=True,
                    ),
                    IndexModel([("trigger", ASCENDING), ("at", ASCENDING)], name="at"),
                ]
            )
            self._trigger_indexes_ready = True
        return hits

    def save_trigger(self, definition: TriggerDefinition) -> None:
        doc = trigger_doc(definition)
        with self._errors("save_trigger"):
            self._col("triggers").replace_one({"_id": definition.id}, doc, upsert=True)

    def delete_trigger(self, trigger_id: str) -> bool:
        with self._errors("delete_trigger"):
            deleted = self._col("triggers").delete_one({"_id": trigger_id}).deleted_count
            self._col("firings").delete_many({"trigger": trigger_id})
            self._hits().delete_many({"trigger": trigger_id})
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
            return [trigger_from(d) for d in found]

    def record_firing(self, firing: Firing) -> bool:
        with self._errors("record_firing"):
            try:
                self._col("firings").insert_one(firing_doc(firing, time.time()))
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
            return [firing_from(d) for d in found]

    def settle_firing(self, trigger_id: str, key: str, error: str = "") -> None:
        with self._errors("settle_firing"):
            self._col("firings").update_one(
                {"trigger": trigger_id, "key": key}, {"$set": {"pending": False, "error": error}}
            )

    def pending_firings(self, before: float, limit: int = 100) -> list[Firing]:
        if limit <= 0:
            return []
        with self._errors("pending_firings"):
            self._hits()  # makes sure the index `pending` exists
            found = self._col("firings").find(
                {"pending": True, "fired_at": {"$lt": before}},
                sort=[("fired_at", 1), ("trigger", 1), ("key", 1)],
                limit=limit,
            )
            return [firing_from(d) for d in found]

    def record_hit(self, hit: Hit, forget_before: float = 0.0) -> bool:
        with self._errors("record_hit"):
            hits = self._hits()
            hits.delete_many({"trigger": hit.trigger, "at": {"$lt": forget_before}})
            try:
                hits.insert_one(
                    {"trigger": hit.trigger, "part": hit.part, "key": hit.key, "at": hit.at}
                )
            except DuplicateKeyError:
                return False
            return True

    def hits(self, trigger_id: str, since: float) -> list[Hit]:
        with self._errors("hits"):
            found = self._hits().find(
                {"trigger": trigger_id, "at": {"$gte": since}},
                sort=[("at", 1), ("part", 1), ("key", 1)],
            )
            return [Hit(d["trigger"], d["part"], d["key"], d["at"]) for d in found]


def trigger_doc(d: TriggerDefinition) -> Doc:
    params = condition_params(d.condition)
    if "value" in params:
        params["value"] = Binary(params["value"])
    return {
        "_id": d.id,
        "name": d.name,
        "kind": d.condition.kind.value,
        "subject": d.condition.subject,
        "params": params,
        "task": d.task,
        "args": Binary(d.args),
        "codec": d.codec,
        "enabled": d.enabled,
        "created": d.created,
        "derive": dict(d.derive),
        "function": d.function,
        "declared": d.declared,
    }


def trigger_from(doc: Doc) -> TriggerDefinition:
    return TriggerDefinition(
        id=doc["_id"],
        name=doc["name"],
        condition=condition_from(doc["kind"], doc.get("params", {})),
        task=doc["task"],
        args=bytes(doc.get("args") or b""),
        codec=doc["codec"],
        enabled=bool(doc["enabled"]),
        created=doc["created"],
        derive=dict(doc.get("derive", {})),
        function=doc.get("function", ""),
        declared=bool(doc.get("declared", False)),
    )


def firing_doc(f: Firing, now: float) -> Doc:
    return {
        "trigger": f.trigger,
        "key": f.key,
        "fired_at": f.fired_at,
        "invocation": f.invocation,
        "source": f.source,
        "error": f.error,
        "call": Binary(f.call),
        "pending": f.pending,
        "fired": date(now),
    }


def firing_from(doc: Doc) -> Firing:
    return Firing(
        doc["trigger"],
        doc["key"],
        doc["fired_at"],
        doc.get("invocation", ""),
        doc.get("source", ""),
        doc.get("error", ""),
        bytes(doc.get("call") or b""),
        bool(doc.get("pending", False)),
    )
