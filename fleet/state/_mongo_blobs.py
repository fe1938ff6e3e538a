"""Large values in MongoDB: content-addressed, chunked below the 16 MB document limit.

Job: store each value once under its key (a content hash chosen by the caller) and give
it back whole, however large, to any number of invocations that carry it.

Contract:
- A value of at most `chunk_size` bytes is one document `{_id: key, size, chunks: 1,
  data, stored}`: written atomically, so readers see all of it or nothing. `stored` is
  when it was last stored (refreshed by a later `put` once `refresh_before` has passed;
  values from before fleet collected them have none and are never collected).
- A larger value is `chunks` documents `{_id: "<key>:<n>", data}` (n from 0), then the
  header `{_id: key, size, chunks, stored}`, written last and only once every chunk is known to
  be stored. A reader that finds the header therefore finds every chunk; a writer that
  died half way leaves no header, and the next writer of the same key completes it.
- Existing keys are kept (insert-or-ignore on duplicate keys): equal keys mean equal
  content, so concurrent writers of one value cannot disturb each other.
- Commands: `put` of any number of small values is one insert; a large value is one
  header lookup (is it stored already? then nothing is sent), then its chunks and
  header in one ordered insert (pymongo splits messages above 48 MB). `get` is one find
  for a small value, two for a large one. `delete` removes headers first, then chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bson import Binary
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from fleet.errors import StateError

_DUPLICATE = 11000
Doc = dict[str, Any]


def put(
    blobs: Collection[Doc],
    values: Sequence[tuple[str, bytes]],
    chunk_size: int,
    now: float,
    refresh_before: float,
) -> None:
    small = [(key, bytes(data)) for key, data in values if len(data) <= chunk_size]
    large = [(key, bytes(data)) for key, data in values if len(data) > chunk_size]
    if small:
        unique = dict(small)
        header = [
            {"_id": k, "size": len(d), "chunks": 1, "data": Binary(d), "stored": now}
            for k, d in unique.items()
        ]
        there = _insert(blobs, header, ordered=False)
        if there:
            _refresh(blobs, [str(header[i]["_id"]) for i in there], now, refresh_before)
    for key, data in dict(large).items():
        if blobs.find_one({"_id": key}, {"_id": 1}) is not None:
            _refresh(blobs, [key], now, refresh_before)
            continue
        count = -(-len(data) // chunk_size)
        docs: list[Doc] = [
            {"_id": f"{key}:{n}", "data": Binary(data[n * chunk_size : (n + 1) * chunk_size])}
            for n in range(count)
        ]
        docs.append({"_id": key, "size": len(data), "chunks": count, "stored": now})
        there = _insert(blobs, docs, ordered=True)
        if there:
            # A chunk was there already (a writer died half way, or one races us):
            # store whatever chunks are missing, then the header.
            _insert(blobs, docs[there[0] : -1], ordered=False)
            _insert(blobs, docs[-1:], ordered=False)


def _refresh(blobs: Collection[Doc], keys: list[str], now: float, before: float) -> None:
    """Restart the grace period of values stored again (see `fleet.state.BLOB_GRACE`);
    only when it is half over, so that a value stored often is not written each time."""
    blobs.update_many({"_id": {"$in": keys}, "stored": {"$lt": before}}, {"$set": {"stored": now}})


def unused(blobs: Collection[Doc], stored_before: float, limit: int) -> list[Doc]:
    """Headers (`_id`, `chunks`) of values last stored before `stored_before`."""
    return list(
        blobs.find(
            {"stored": {"$lt": stored_before}},
            {"_id": 1, "chunks": 1},
            limit=limit,
            batch_size=limit,
        )
    )


def delete(blobs: Collection[Doc], headers: Sequence[Doc]) -> int:
    """Delete values: headers first (a value without its header is not there), then
    their chunks."""
    if not headers:
        return 0
    deleted = blobs.delete_many({"_id": {"$in": [h["_id"] for h in headers]}}).deleted_count
    chunks = [
        f"{h['_id']}:{n}" for h in headers if h.get("chunks", 1) > 1 for n in range(h["chunks"])
    ]
    for start in range(0, len(chunks), 1000):
        blobs.delete_many({"_id": {"$in": chunks[start : start + 1000]}})
    return int(deleted)


def get(blobs: Collection[Doc], key: str) -> bytes | None:
    header = blobs.find_one({"_id": key})
    if header is None:
        return None
    if header["chunks"] == 1 and "data" in header:
        return bytes(header["data"])
    count = int(header["chunks"])
    ids = [f"{key}:{n}" for n in range(count)]
    parts: dict[str, bytes] = {
        doc["_id"]: bytes(doc["data"])
        for doc in blobs.find({"_id": {"$in": ids}}, limit=count, batch_size=count)
    }
    missing = [i for i in ids if i not in parts]
    if missing:
        raise StateError(f"large value {key}: chunk(s) {missing[:3]} missing from the store")
    data = b"".join(parts[i] for i in ids)
    if len(data) != header["size"]:
        raise StateError(f"large value {key}: {len(data)} bytes stored, {header['size']} expected")
    return data


def _insert(blobs: Collection[Doc], docs: list[Doc], *, ordered: bool) -> list[int]:
    """Insert, ignoring duplicate keys; the indexes of the duplicates (when ordered,
    the first one only: the insert stops there)."""
    if not docs:
        return []
    try:
        blobs.insert_many(docs, ordered=ordered)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        other = [e for e in errors if e.get("code") != _DUPLICATE]
        if other:
            raise StateError(f"storing large values failed: {other[0].get('errmsg')}") from exc
        return [int(e["index"]) for e in errors]
    return []
