"""The MongoDB state store: the production store behind `StateStore` and `TriggerStore`.

Job: keep invocations (state, history, results), runner heartbeats, leader leases,
scheduled invocations, large values and trigger definitions in MongoDB, with one atomic
command per status change and as few round trips per invocation as the load allows.

Schema (database from the URL path, default `fleet`; collections `<prefix><name>`,
prefix `fleet_`; created idempotently by `init()` / `fleet state init` and on first use,
see `_mongo_schema`):
- `invocations` `{_id: id, task, queue, codec, status, call_key, owner, attempt, due,
  parent, reply_to, waits_on: [...], created, updated, args | args_ref, result |
  result_ref, error: {type, message, traceback, args}, history: [{s, at, by, note,
  op}], finished: Date, refs: [blob keys]}`. Times are float seconds (client clocks,
  as in every fleet store); `due` orders scheduled invocations, retries and pending
  deadlines. `by`/`note` are left out when empty; `op` is a token per change (see
  apply). `*_ref` names a blob holding an argument or result above `inline_limit` (a
  safety net under the app's `large_value_threshold`, which normally keeps them out).
  `finished` is set when a final status is entered; the TTL index `finished_ttl`
  deletes the document `retention` seconds later; `expire` (the leader, in batches)
  deletes them too, so retention does not depend on the TTL monitor alone. Indexes:
  `status_due` (leader: held and stale pending), `status_owner` (recovery),
  `call_key`, `task_created`, `refs` (sparse).
- `runners` `{_id: runner id, kind, host, pid, beat, parent, queues, in_hand, started,
  stopped, info, seen: Date}`; TTL `seen_ttl` forgets runners silent for `retention`.
- `leases` `{_id: name, holder, expires}`, `expires` in epoch milliseconds of the
  *server's* clock (`$$NOW`), so runner clock skew cannot make two leaders.
- `blobs`: content-addressed values, chunked below the 16 MB limit (`_mongo_blobs`),
  with `stored` (index `stored`). `expire` collects those that no invocation lists in
  its `refs` (index `refs`: the blobs its args and result refer to), so a blob shared by
  an invocation scheduled far ahead stays. Blobs written before `stored` existed are
  never collected (invocations of that time have no `refs`).
- `triggers` `{_id, name, kind, subject, params, task, args, codec, enabled, created}`
  (`subject`: watched task or event; index `kind_subject`) and `firings` `{trigger,
  key, fired_at, invocation, fired: Date}` with the unique index `once` on
  (trigger, key) and TTL `fired_ttl` (retention).

Contract, beyond `fleet.state` and `fleet.triggers`:
- Each `Change` is one filter `{_id, status: {$in: expect}, owner?}` and one update
  (`$set` status/owner/fields, `$push` the history entry, `$inc` attempt): atomic on
  the document, no read before the write. One change is one `update`; N changes are
  one ordered `bulk_write` (ordered, because a later change may build on an earlier one
  of the same batch; a non-matching filter is not an error and does not stop it). When
  fewer than N matched, one `find` of the batch's `op` tokens in the histories says
  which took effect. A write interrupted without an answer leaves its tokens with the
  store; an equal Change applied again reuses its token, so a retry of a change that
  did take effect reports True instead of losing it.
- `register` of N is one ordered `insert`; when an id is taken, the ones inserted before
  it are deleted again (all or nothing) and StateError names the id.
- `get` and `find` are one `find` each (limit and batch size set so no `getMore` is
  needed below 16 MB); `find` orders by (created, id).
- `lease` is one upsert whose filter matches the lease held by `holder` or expired; a
  duplicate `_id` on insert means another holder: False. `release` deletes it if held.
- No I/O in the constructor: the client connects, and the schema is made, on first use
  (a worker started before MongoDB keeps retrying instead of dying). Unreachable:
  StateError "MongoDB at HOSTS not reachable within Ns", after the connect timeout.
  Retryable writes are always on; the URL carries auth, TLS, replica set, timeouts.
- Options (keywords): see `_mongo_conn.Options`; `connect_timeout` and `retention`
  come from the app's settings (`SETTINGS`). Unknown options raise ConfigError.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from bson.errors import BSONError
from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConfigurationError, ConnectionFailure, PyMongoError

from fleet._urls import redact, scrub, secrets_of
from fleet.errors import ConfigError, DuplicateInvocationError, FleetError, StateError
from fleet.state import BLOB_GRACE, Change, Expired, InvocationRecord, Query, StateStore
from fleet.state import _mongo_blobs as blobs
from fleet.state import _mongo_docs as docs
from fleet.state._mongo_conn import (
    client_for,
    describe,
    hosts_of,
    parse_options,
    replica_settings,
)
from fleet.state._mongo_runners import MongoRunners
from fleet.state._mongo_schema import Names, ensure
from fleet.state._mongo_triggers import MongoTriggers
from fleet.status import FINAL, Status

Doc = dict[str, Any]
_UNSURE_MAX = 10_000


class MongoStateStore(MongoRunners, StateStore, MongoTriggers):
    """See the module docstring."""

    SETTINGS: ClassVar[tuple[str, ...]] = ("connect_timeout", "retention")
    """Settings of the app that `open_state` passes as options."""

    def __init__(self, url: str, **options: object) -> None:
        self.options = parse_options(options)
        self.url = redact(url)
        self.names = Names.with_prefix(self.options.prefix)
        self._url = url
        self._hosts = hosts_of(url)
        self._secrets = secrets_of(url)
        self._timeout = self.options.connect_timeout
        self._lock = threading.Lock()
        self._client: MongoClient[Doc] | None = None
        self._db: Database[Doc] | None = None
        self._pid = 0
        self._ready = False
        self._unsure: OrderedDict[Change, str] = OrderedDict()
        if not url.lower().startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError(f"state_url {self.url!r} is not a mongodb:// URL")
        if url.lower().startswith("mongodb://"):  # +srv would need DNS here: checked on use
            from pymongo.uri_parser import parse_uri

            try:
                parse_uri(url)
            except (ConfigurationError, ValueError) as exc:
                raise ConfigError(
                    f"state_url {self.url!r}: {scrub(str(exc), self._secrets)}"
                ) from None
        replica_settings(url)  # refuses w=0, retryWrites=false, secondary reads at once

    # -- connection and schema ----------------------------------------------------------

    def database(self) -> Database[Doc]:
        """The pymongo database, connected and with its schema made (first use)."""
        db = self._db
        if db is not None and self._ready and self._pid == os.getpid():
            return db
        with self._lock:
            if self._db is None or self._pid != os.getpid():
                try:
                    client = client_for(self._url, self.options)
                except ConfigurationError as exc:
                    raise ConfigError(
                        f"state_url {self.url!r}: {scrub(str(exc), self._secrets)}"
                    ) from None
                self._client, self._pid, self._ready = client, os.getpid(), False
                self._timeout = client.options.server_selection_timeout
                self._db = client.get_default_database(self.options.database)
            if not self._ready:
                ensure(self._db, self.names, self.options.retention)
                self._ready = True
            return self._db

    def init(self) -> None:
        """Create collections and indexes now (idempotent; `fleet state init`)."""
        with self._errors("init"):
            self._ready = False
            self.database()

    def _col(self, name: str) -> Collection[Doc]:
        return self.database()[getattr(self.names, name)]

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except FleetError:
            raise
        except (PyMongoError, BSONError) as exc:
            raise StateError(
                describe(exc, self._hosts, self._timeout, what, self._secrets)
            ) from exc

    # -- invocations --------------------------------------------------------------------

    def register(self, records: Sequence[InvocationRecord]) -> None:
        for r in records:
            if not isinstance(r, InvocationRecord):
                raise StateError(f"register takes InvocationRecord objects, got {r!r}")
        if not records:
            return
        ids = [r.id for r in records]
        if len(set(ids)) < len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DuplicateInvocationError(
                f"cannot register: invocation id {dup!r} appears twice in the batch"
            )
        now = time.time()
        with self._errors("register"):
            col = self._col("invocations")
            new = [
                docs.invocation_doc(r, now, self._spill(r.args), self._spill(r.result))
                for r in records
            ]
            try:
                col.insert_many(new, ordered=True)
            except BulkWriteError as exc:
                inserted = ids[: exc.details.get("nInserted", 0)]
                if inserted:  # all or nothing: take back the ones before the failure
                    col.delete_many({"_id": {"$in": inserted}})
                error = exc.details["writeErrors"][0]
                if error.get("code") == 11000:
                    raise DuplicateInvocationError(
                        f"cannot register: invocation id {ids[error['index']]!r} "
                        "is already registered"
                    ) from None
                raise StateError(f"cannot register: {error.get('errmsg')}") from exc

    def _spill(self, value: bytes | None) -> str:
        """Store an oversized value as a blob; its key, or '' when it stays inline."""
        if value is None or len(value) <= self.options.inline_limit:
            return ""
        key = hashlib.blake2b(value, digest_size=20).hexdigest()
        self.put_blobs([(key, value)])
        return key

    def apply(self, changes: Sequence[Change], at: float | None = None) -> list[bool]:
        for ch in changes:
            if not isinstance(ch, Change):
                raise StateError(f"apply takes Change objects, got {ch!r}")
        if not changes:
            return []
        now = time.time()
        when = now if at is None else at
        nonce = secrets.token_hex(5)
        with self._lock:
            tokens = [self._unsure.pop(ch, "") or f"{nonce}{i:x}" for i, ch in enumerate(changes)]
        with self._errors("apply"):
            col = self._col("invocations")
            ops = [
                docs.change_op(ch, when, now, token, self._spill(ch.result))
                for ch, token in zip(changes, tokens, strict=True)
            ]
            try:
                if len(ops) == 1:
                    matched = col.update_one(*ops[0]).matched_count
                else:
                    requests = [UpdateOne(flt, update) for flt, update in ops]
                    matched = col.bulk_write(requests, ordered=True).matched_count
            except (ConnectionFailure, BulkWriteError):
                self._remember(changes, tokens)  # it may have been applied; see docstring
                raise
            if matched == len(changes):
                return [True] * len(changes)
            return self._took_effect(col, changes, tokens)

    def _remember(self, changes: Sequence[Change], tokens: list[str]) -> None:
        with self._lock:
            for ch, token in zip(changes, tokens, strict=True):
                self._unsure[ch] = token
            while len(self._unsure) > _UNSURE_MAX:
                self._unsure.popitem(last=False)

    @staticmethod
    def _took_effect(
        col: Collection[Doc], changes: Sequence[Change], tokens: list[str]
    ) -> list[bool]:
        ids = list(dict.fromkeys(ch.id for ch in changes))
        found = col.find(
            {"_id": {"$in": ids}, "history.op": {"$in": tokens}},
            {"history.op": 1},
            limit=len(ids),
            batch_size=len(ids),
        )
        present = {entry.get("op") for doc in found for entry in doc.get("history", ())}
        return [token in present for token in tokens]

    def get(self, ids: Sequence[str]) -> list[InvocationRecord]:
        if not ids:
            return []
        unique = list(dict.fromkeys(ids))
        with self._errors("get"):
            found = self._col("invocations").find(
                {"_id": {"$in": unique}}, limit=len(unique), batch_size=len(unique)
            )
            records = {r.id: r for r in map(self._record, found)}
        return [records[i] for i in ids if i in records]

    def _record(self, doc: Doc) -> InvocationRecord:
        args_ref, result_ref = docs.blob_refs(doc)
        args = self._blob(args_ref) if args_ref else None
        result = self._blob(result_ref) if result_ref else None
        return docs.invocation_from(doc, args, result)

    def _blob(self, key: str) -> bytes:
        value = self.get_blob(key)
        if value is None:
            raise StateError(f"large value {key} is missing from the state store")
        return value

    def find(self, query: Query) -> list[InvocationRecord]:
        if query.limit <= 0:
            return []
        with self._errors("find"):
            found = self._col("invocations").find(
                docs.query_filter(query),
                sort=[("created", 1), ("_id", 1)],
                limit=query.limit,
                batch_size=query.limit,
            )
            return [self._record(doc) for doc in found]

    def counts(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        with self._errors("counts"):
            groups = self._col("invocations").aggregate(
                [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
            )
            for group in groups:
                counts[Status(group["_id"])] = int(group["n"])
        return counts

    def purge(self) -> int:
        with self._errors("purge"):
            return int(self._col("invocations").delete_many({}).deleted_count)

    # -- due times, blobs, expiry -------------------------------------------------------

    def clear_due(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        flt = {"_id": {"$in": list(dict.fromkeys(ids))}, "status": Status.PENDING.value}
        with self._errors("clear_due"):
            self._col("invocations").update_many(flt, {"$set": {"due": None}})

    def put_blobs(self, values: Sequence[tuple[str, bytes]]) -> None:
        if values:
            now = time.time()
            with self._errors("put_blobs"):
                blobs.put(
                    self._col("blobs"), values, self.options.chunk_size, now, now - BLOB_GRACE / 2
                )

    def get_blob(self, key: str) -> bytes | None:
        with self._errors("get_blob"):
            return blobs.get(self._col("blobs"), key)

    def expire(self, before: float, limit: int = 1000) -> Expired:
        if limit <= 0:
            return Expired()
        final = {"$in": sorted(s.value for s in FINAL)}
        with self._errors("expire"):
            col = self._col("invocations")
            old = {"status": final, "updated": {"$lt": before}}
            ids = [d["_id"] for d in col.find(old, {"_id": 1}, limit=limit, batch_size=limit)]
            gone = col.delete_many({"_id": {"$in": ids}, **old}).deleted_count if ids else 0
            store = self._col("blobs")
            headers = blobs.unused(store, before - BLOB_GRACE, limit)
            keys = [h["_id"] for h in headers]
            # distinct: a value shared by many invocations comes back once, not per
            # invocation (the index answers it).
            used = set(col.distinct("refs", {"refs": {"$in": keys}})) & set(keys) if keys else set()
            if used:  # still needed: their grace restarts, so the next batch sees others
                store.update_many({"_id": {"$in": sorted(used)}}, {"$set": {"stored": time.time()}})
            collected = blobs.delete(store, [h for h in headers if h["_id"] not in used])
        return Expired(int(gone), collected)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            client, self._client, self._db, self._ready = self._client, None, None, False
        if client is not None and self._pid == os.getpid():
            client.close()

    def __repr__(self) -> str:
        return f"MongoStateStore({self.url!r})"
