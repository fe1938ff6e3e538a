"""Consumers and listeners of the SQLite broker (see `fleet.broker.sqlite`).

Job: claim messages for one worker process with as few statements as possible, and
sleep on a doorbell, not in a polling loop, while there is nothing to claim.

Contract:
- `receive` runs one autocommit `UPDATE ... RETURNING` per attempt (atomic on its own:
  two consumers can never claim the same row). At most once per `poll_interval` it
  first looks for expired holds (one indexed read) and makes them ready again. Only when
  a claimed row is past its queue's delivery limit or TTL does a second transaction move
  it to the dead letters.
- Between attempts it waits on its doorbell for at most `poll_interval` seconds; a ring
  from a publisher, `wakeup()` or the timeout ends the wait. `receive(0, timeout)` (a
  worker with no free slot) takes nothing and waits for `wakeup()` or the timeout only.
- `ack`, `release` and `dead_letter` touch only rows this consumer still holds, matched
  by id and invocation id: a message id can be used again once the newest message is
  deleted (`fleet.broker._sqlite_schema`), so a delivery whose hold expired never acks
  another message that got its id. `close` releases all of them at once and unregisters
  the consumer's address.
- The consumer's row in `fleet_listeners` is refreshed (`seen`) at most every
  `SEEN_INTERVAL` seconds, and put back if a publisher removed it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleet import _doorbell
from fleet._sqlite import Tx, chunks, placeholders
from fleet.broker import Consumer, Delivery, Listener, Message, _common
from fleet.errors import BrokerError

if TYPE_CHECKING:
    from fleet.broker.sqlite import SQLiteBroker

log = logging.getLogger(__name__)

SEEN_INTERVAL = 5.0
_COLUMNS = "id, queue, body, invocation_id, priority, headers, delivery_count, created"
_HELD_ONE = "holder = ? AND id = ? AND invocation_id = ?"
_ACK = "DELETE FROM fleet_messages WHERE {}"
_RELEASE = "UPDATE fleet_messages SET holder = NULL, visible_at = 0 WHERE {} RETURNING queue"
_BURY_HELD = _ACK.format(_HELD_ONE) + (
    " RETURNING queue, body, invocation_id, priority, headers, delivery_count"
)
_CHUNK = 50
"""Deliveries per statement of `_held`: its CASE is searched once per row, so a
chunk costs O(n^2) comparisons; 50 keeps that at a few microseconds."""


class SQLiteConsumer(Consumer):
    """Receives from queues of a `SQLiteBroker`; belongs to one thread (see Consumer)."""

    def __init__(self, broker: SQLiteBroker, queues: tuple[str, ...]) -> None:
        self._broker = broker
        self._db = broker.db
        self.queues = queues
        self.id = _doorbell.unique_name("c")
        self._bell = _doorbell.Doorbell(broker.namespace, self.id)
        self.address = self._bell.address
        self._woken = False
        self._closed = False
        self._seen = 0.0
        self._next_sweep = 0.0
        # Each queue's head comes from its own index range; several are merged by a sort
        # of at most n rows per queue, never of the whole backlog.
        head = (
            "SELECT id, priority FROM fleet_messages WHERE queue = ? AND holder IS NULL"
            " ORDER BY priority DESC, id LIMIT ?"
        )
        where = "queue = ?" if len(queues) == 1 else f"queue IN ({placeholders(queues)})"
        self._ready_sql = f"SELECT 1 FROM fleet_messages WHERE {where} AND holder IS NULL LIMIT 1"
        heads = " UNION ALL ".join(f"SELECT * FROM ({head})" for _ in queues)
        self._claim_sql = (
            "UPDATE fleet_messages SET holder = ?, visible_at = ?,"
            " delivery_count = delivery_count + 1 WHERE id IN ("
            + (
                head.replace("id, priority", "id", 1)
                if len(queues) == 1
                else f"SELECT id FROM ({heads}) ORDER BY priority DESC, id LIMIT ?"
            )
            + f") RETURNING {_COLUMNS}"
        )
        try:
            self._register()
        except BaseException:
            self._bell.close()
            raise

    def _register(self) -> None:
        now = time.time()
        rows = [(self.address, q, os.getpid(), "consumer", now) for q in self.queues]
        self._db.write(
            lambda tx: tx.executemany(
                "INSERT OR REPLACE INTO fleet_listeners (address, queue, pid, kind, seen)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        )
        self._seen = time.monotonic()
        self._broker._addresses.clear()  # our own publishers see us at once

    def _touch(self) -> None:
        if time.monotonic() - self._seen < SEEN_INTERVAL:
            return
        n = self._db.rowcount(
            "UPDATE fleet_listeners SET seen = ? WHERE address = ?", (time.time(), self.address)
        )
        if n < len(self.queues):
            log.info("consumer %s: registration was removed; registering again", self.id)
            self._register()
        self._seen = time.monotonic()

    def receive(self, max_messages: int, timeout: float | None) -> list[Delivery]:
        if self._closed:
            raise BrokerError(f"consumer {self.id} of {list(self.queues)} is closed")
        poll = self._broker.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        if max_messages <= 0:
            return self._idle(deadline)
        woke = False
        while True:
            got = self._claim(max_messages, check_first=woke)
            if got or self._woken:
                self._woken = False
                return got
            wait = poll
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                wait = min(wait, remaining)
            self._touch()
            self._bell.wait(wait)
            woke = True

    def _idle(self, deadline: float | None) -> list[Delivery]:
        """receive(0): take nothing; wait for `wakeup` or the deadline, not for rings."""
        while not self._woken:
            self._touch()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self._bell.wait(remaining)
        self._woken = False
        return []

    def _claim(self, n: int, check_first: bool = False) -> list[Delivery]:
        # After a wait, look before taking the write lock: a publish rings every idle
        # consumer, and all but one of them would take the lock to find nothing.
        if (
            check_first
            and time.time() < self._next_sweep  # a due sweep goes through the claim
            and not self._db.query(self._ready_sql, self.queues)
        ):
            return []
        while True:
            out, buried = self._claim_once(n)
            if out or not buried:  # when all we took was dead, look again at once
                return out

    def _claim_once(self, n: int) -> tuple[list[Delivery], bool]:
        broker = self._broker
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        params: tuple[Any, ...] = (self.id, now + broker.visibility_timeout)
        for queue in self.queues:
            params += (queue, n)
        if len(self.queues) > 1:
            params += (n,)
        rows = self._db.modify(self._claim_sql, params)
        if not rows:
            return [], False
        rows.sort(key=lambda r: (-r[4], r[0]))
        out: list[Delivery] = []
        doomed: list[tuple[int, str, str]] = []
        for id_, queue, body, inv, priority, headers, count, created in rows:
            spec = broker.spec(queue)
            if spec.delivery_limit is not None and count > spec.delivery_limit:
                doomed.append((id_, inv, _common.delivery_limit_reason(spec.delivery_limit)))
            elif spec.message_ttl is not None and now - created > spec.message_ttl:
                doomed.append((id_, inv, _common.EXPIRED))
            else:
                message = Message(queue, bytes(body), inv, priority, _common.headers_from(headers))
                out.append(Delivery(message, id_, count))
        if doomed:
            self._db.write(lambda tx: self._bury(tx, doomed, now, held=True))
        return out, bool(doomed)

    def _sweep(self, now: float) -> None:
        """Give expired holds (of consumers that died or hung) back to their queues."""
        self._next_sweep = now + self._broker.poll_interval
        expired = "holder IS NOT NULL AND visible_at <= ?"
        if self._db.query(f"SELECT 1 FROM fleet_messages WHERE {expired} LIMIT 1", (now,)):
            rows = self._db.modify(
                f"UPDATE fleet_messages SET holder = NULL WHERE {expired} RETURNING queue", (now,)
            )
            log.info("consumer %s: %d expired deliveries made ready again", self.id, len(rows))
            self._broker.ring({r[0] for r in rows})

    def _bury(self, tx: Tx, doomed: Sequence[tuple[int, str, str]], now: float, held: bool) -> int:
        """Move rows this consumer holds (id, invocation id, reason) to the dead letters;
        return how many."""
        rows: list[tuple[Any, ...]] = []
        for id_, invocation_id, reason in doomed:
            # fetchall: a RETURNING statement must run to completion before COMMIT.
            for found in tx.execute(_BURY_HELD, (self.id, id_, invocation_id)).fetchall():
                count = found[5] - 1 if held else found[5]  # deliveries actually made
                rows.append((*found[:5], count, reason, now))
        self._broker._bury(tx, rows)
        return len(rows)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        parts = self._held(deliveries)
        if len(parts) == 1:
            self._db.rowcount(_ACK.format(parts[0][0]), parts[0][1])
        elif parts:
            self._db.write(lambda tx: [tx.execute(_ACK.format(w), p) for w, p in parts])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        ((id_, invocation_id),) = self._tags([delivery])
        doomed = [(id_, invocation_id, str(reason))]
        now = time.time()
        if not self._db.write(lambda tx: self._bury(tx, doomed, now, held=False)):
            log.debug("consumer %s: delivery %r is no longer held", self.id, delivery.tag)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        parts = self._held(deliveries)

        def tx_fn(tx: Tx) -> set[str]:
            queues: set[str] = set()
            for where, params in parts:
                queues.update(r[0] for r in tx.execute(_RELEASE.format(where), params))
            return queues

        queues = self._db.write(tx_fn) if parts else set()
        if queues:
            self._broker.ring(queues)

    def _held(self, deliveries: Sequence[Delivery]) -> list[tuple[str, tuple[Any, ...]]]:
        """A WHERE clause and its parameters for each chunk of `deliveries`: the rows
        this consumer holds with their ids and invocation ids. The ids find the rows
        (primary key); the invocation ids make sure they are the same messages. Several
        chunks go in one transaction (the callers')."""
        parts: list[tuple[str, tuple[Any, ...]]] = []
        for part in chunks(self._tags(deliveries), _CHUNK):
            if len(part) == 1:
                parts.append((_HELD_ONE, (self.id, *part[0])))
                continue
            cases = " WHEN ? THEN ?" * len(part)
            where = f"holder = ? AND id IN ({placeholders(part)})"
            where += f" AND invocation_id = CASE id{cases} END"
            parts.append((where, (self.id, *(i for i, _ in part), *(x for t in part for x in t))))
        return parts

    @staticmethod
    def _tags(deliveries: Sequence[Delivery]) -> list[tuple[int, str]]:
        tags = []
        for delivery in deliveries:
            if type(delivery.tag) is not int:
                raise BrokerError(f"not a delivery of the SQLite broker: {delivery!r}")
            tags.append((delivery.tag, delivery.message.invocation_id))
        return tags

    def wakeup(self) -> None:
        self._woken = True
        self._bell.wakeup()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            rows = self._db.modify(
                "UPDATE fleet_messages SET holder = NULL, visible_at = 0 WHERE holder = ?"
                " RETURNING queue",
                (self.id,),
            )
            self._db.rowcount("DELETE FROM fleet_listeners WHERE address = ?", (self.address,))
            self._broker._addresses.clear()
            if rows:
                self._broker.ring({r[0] for r in rows})
        finally:
            self._bell.close()

    def __repr__(self) -> str:
        return f"SQLiteConsumer({self.id!r}, {list(self.queues)!r})"


class SQLiteListener(Listener):
    """A doorbell that collects notification payloads for this process."""

    def __init__(self, broker: SQLiteBroker) -> None:
        self._bell = _doorbell.Doorbell(broker.namespace, _doorbell.unique_name("l"))
        self.address = self._bell.address
        self._woken = False
        self._closed = False

    def receive(self, timeout: float | None) -> list[bytes]:
        if self._closed:
            raise BrokerError(f"listener {self.address!r} is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None
            if deadline is not None:
                wait = max(0.0, deadline - time.monotonic())
            payloads = self._bell.wait(wait)
            if payloads or self._woken:
                self._woken = False
                return payloads
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def wakeup(self) -> None:
        self._woken = True
        self._bell.wakeup()

    def close(self) -> None:
        self._closed = True
        self._bell.close()
