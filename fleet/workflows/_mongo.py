"""`HistoryStore` in MongoDB, beside the state store's collections.

Job: keep workflow events in `<prefix>wf_events` (one document per step, `_id`
'<history>:<seq>'), data in `<prefix>wf_data` (one document per run and key) and
signals in `<prefix>wf_signals`, in the state store's database (pymongo, imported
lazily by `fleet.workflows.history_store`).

Contract:
- `append` is one `insert_one`: the `_id` carries the position, so a second writer of
  the same position gets a duplicate key (`HistoryConflictError`): a compare-and-set
  in one command, the children's membership included (the document's `ids`, with a
  multikey index that `run_of` queries). A step of many children (a fan-out) is one
  document, so one command. A workflow's `wf.set` is its 'set' event alone: `data`
  merges the run's 'set' events with the documents of `set_data` (child tasks), the
  latest of each key winning.
- pymongo errors leave as `StateError` naming the operation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from fleet.errors import StateError
from fleet.workflows._history import Event, HistoryConflictError, HistoryStore

Doc = dict[str, Any]


class MongoHistoryStore(HistoryStore):
    """See the module docstring.

    Args:
        database: returns the connected pymongo database (the state store's `database`).
        prefix: the state store's collection prefix.
    """

    def __init__(self, database: Callable[[], Database[Doc]], prefix: str = "") -> None:
        self._database = database
        self._prefix = prefix
        self._indexed = False
        self._lock = threading.Lock()

    def _col(self, name: str) -> Collection[Doc]:
        db = self._database()
        if not self._indexed:
            with self._lock:
                if not self._indexed:
                    events = db[f"{self._prefix}wf_events"]
                    events.create_index([("history", ASCENDING), ("seq", ASCENDING)])
                    events.create_index([("ids", ASCENDING)])
                    events.create_index([("run", ASCENDING), ("kind", ASCENDING)])
                    db[f"{self._prefix}wf_data"].create_index(
                        [("run", ASCENDING), ("key", ASCENDING)], unique=True
                    )
                    db[f"{self._prefix}wf_signals"].create_index(
                        [("run", ASCENDING), ("name", ASCENDING), ("at", ASCENDING)]
                    )
                    self._indexed = True
        return db[f"{self._prefix}wf_{name}"]

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except HistoryConflictError:
            raise
        except PyMongoError as exc:
            raise StateError(f"workflow history store failed {what}: {exc}") from exc

    def load(self, history: str) -> list[Event]:
        with self._errors("loading a history"):
            docs = list(self._col("events").find({"history": history}).sort("seq", ASCENDING))
        return [
            Event(d["seq"], d["kind"], d["name"], bytes(d["data"]), tuple(d["ids"]), d["at"])
            for d in docs
        ]

    def append(self, history: str, run: str, event: Event) -> None:
        doc = {
            "_id": f"{history}:{event.seq}",
            "history": history,
            "run": run,
            "seq": event.seq,
            "kind": event.kind,
            "name": event.name,
            "data": event.data,
            "ids": list(event.ids),
            "at": event.at,
        }
        with self._errors("appending to a history"):
            try:
                self._col("events").insert_one(doc)
            except DuplicateKeyError:
                raise HistoryConflictError(
                    f"workflow history {history}: position {event.seq} is already recorded"
                ) from None

    def run_of(self, invocation_id: str) -> str | None:
        with self._errors("finding a run"):
            doc = self._col("events").find_one({"ids": invocation_id}, {"run": 1})
        return None if doc is None else str(doc["run"])

    def set_data(self, run: str, key: str, value: bytes) -> None:
        doc = {"run": run, "key": key, "value": value, "at": time.time()}
        with self._errors("setting workflow data"):
            self._col("data").replace_one({"run": run, "key": key}, doc, upsert=True)

    def data(self, run: str) -> dict[str, bytes]:
        with self._errors("reading workflow data"):
            written = [
                (d["at"], d["key"], d["value"]) for d in self._col("data").find({"run": run})
            ]
            recorded = self._col("events").find({"run": run, "kind": "set"})
            written += [(d["at"], d["name"], d["data"]) for d in recorded]
        return {str(key): bytes(value) for _, key, value in sorted(written, key=lambda w: w[0])}

    def signal(self, run: str, name: str, payload: bytes) -> None:
        with self._errors("sending a signal"):
            self._col("signals").insert_one(
                {"run": run, "name": name, "payload": payload, "at": time.time()}
            )

    def signals(self, run: str, name: str) -> list[bytes]:
        with self._errors("reading signals"):
            docs = self._col("signals").find({"run": run, "name": name})
            ordered = sorted(docs, key=lambda d: (d["at"], d["_id"]))
        return [bytes(d["payload"]) for d in ordered]
