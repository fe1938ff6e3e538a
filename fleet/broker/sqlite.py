"""The embedded broker: queues in a SQLite file, push wakeups over Unix datagrams.

Job: implement the `Broker` contract for any number of processes on one host sharing a
database file (by default `.fleet/fleet.db`, next to the state store's tables), fast
enough for thousands of messages a second and idle at ~0% CPU.

Contract, beyond `fleet.broker`:
- Tables `fleet_messages`, `fleet_dead_letters`, `fleet_queues` (declared specs, shared
  by every process) and `fleet_listeners` (doorbell addresses of live consumers).
- One write transaction per call: `publish` of N messages is one transaction (an
  executemany); `receive` claims up to N messages with one
  `UPDATE ... WHERE id IN (SELECT ... ORDER BY priority DESC, id LIMIT ?) RETURNING`;
  `ack` of N is one DELETE.
- Ready rows have no `holder`; a partial index over them keeps a claim O(log n) however
  many messages are held. A claimed message is held for `visibility_timeout` seconds
  (default 30); consumers sweep expired holds back to ready at most once per
  `poll_interval`, and it is delivered again with `delivery_count` + 1. `release` and
  `Consumer.close` give messages back at once. Past the queue's `delivery_limit` it is
  dead-lettered ('delivery limit N exceeded'); past `message_ttl` when claimed, as
  'expired'.
- No polling on the hot path: each consumer owns a `fleet._doorbell.Doorbell` whose
  address it registers in `fleet_listeners`; after a commit that makes messages ready, a
  publisher rings the consumers of those queues (their list is cached for
  `LISTENER_CACHE_TTL` seconds, so a brand-new consumer may wait for its safety net
  once). An idle `receive` sleeps in the kernel and checks the table again only every
  `poll_interval` seconds (default 1), to notice expired deliveries.
- Listener addresses are doorbell addresses; `notify` sends the payload as a datagram
  (at most `fleet._doorbell.MAX_PAYLOAD` bytes; larger ones arrive as the `OVERSIZE`
  marker and the waiter must read the state store). A receiver whose queue is full
  gets `NOTIFY_PATIENCE` seconds to make room, unless it let a notification time out
  in the last `NOTIFY_GIVE_UP` seconds (then it gets none, so a stuck process cannot
  slow every commit down).
- Options: `visibility_timeout`, `poll_interval`, `busy_timeout` (seconds).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from fleet import _doorbell
from fleet._sqlite import Database, Tx, chunks, float_options, path_from_url, placeholders
from fleet._urls import redact
from fleet.broker import Broker, DeadLetter, Message, QueueStats, _common
from fleet.broker._sqlite_consumer import SQLiteConsumer, SQLiteListener
from fleet.broker._sqlite_schema import BURY, INSERT, MESSAGE_COLS, SCHEMA, message_row
from fleet.errors import BrokerError, PublishError
from fleet.queues import QueueSpec

log = logging.getLogger(__name__)

LISTENER_CACHE_TTL = 1.0
"""Seconds a publisher trusts its list of consumer addresses per queue."""
SPEC_CACHE_TTL = 5.0
"""Seconds a broker trusts a queue spec it read from `fleet_queues`."""
NOTIFY_PATIENCE = 0.05
"""Seconds a notification waits for room at a receiver whose queue is full: its waiter
thread may be paused for a garbage collection or a GIL hand-off (5-10 ms), and a note
given up costs that waiter up to its fallback period (1 s)."""
NOTIFY_GIVE_UP = 1.0
"""Seconds a receiver that let a notification time out gets no patience."""


class SQLiteBroker(Broker):
    """See the module docstring."""

    def __init__(self, url: str, **options: object) -> None:
        opts = float_options(
            "SQLiteBroker",
            options,
            {
                "visibility_timeout": _common.DEFAULT_VISIBILITY_TIMEOUT,
                "poll_interval": _common.DEFAULT_POLL_INTERVAL,
                "busy_timeout": 30.0,
            },
        )
        self.url = redact(url)
        self.visibility_timeout = opts["visibility_timeout"]
        self.poll_interval = opts["poll_interval"]
        path = path_from_url(url, "broker_url")
        self.namespace = str(path)
        """What doorbell addresses hash: the absolute database path."""
        self.db = Database(path, SCHEMA, BrokerError, opts["busy_timeout"])
        self._specs: dict[str, tuple[float, QueueSpec]] = {}
        self._addresses: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._children: weakref.WeakSet[SQLiteConsumer | SQLiteListener] = weakref.WeakSet()
        self._closed = False
        self._impatient: dict[str, float] = {}
        """Receivers that let a notification time out lately, until when (monotonic)."""

    @property
    def statements(self) -> int:
        """SQL statements executed by this broker so far (executemany counts rows)."""
        return self.db.statements

    @property
    def transactions(self) -> int:
        return self.db.transactions

    # -- queues ---------------------------------------------------------------------

    def declare(self, queues: Sequence[QueueSpec]) -> None:
        for spec in queues:
            if not isinstance(spec, QueueSpec):
                raise BrokerError(f"declare takes QueueSpec objects, got {spec!r}")
        rows = [(spec.name, _common.spec_to_json(spec)) for spec in queues]
        if rows:
            self.db.write(
                lambda tx: tx.executemany(
                    "INSERT OR REPLACE INTO fleet_queues (name, spec) VALUES (?, ?)", rows
                )
            )
        forever = float("inf")
        with self._lock:
            for spec in queues:
                self._specs[spec.name] = (forever, spec)

    def spec(self, queue: str) -> QueueSpec:
        """The spec of `queue`: declared here, declared by another process, or defaults."""
        now = time.monotonic()
        cached = self._specs.get(queue)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = self.db.query("SELECT spec FROM fleet_queues WHERE name = ?", (queue,))
        spec = _common.spec_from_json(rows[0][0]) if rows else QueueSpec(name=queue)
        with self._lock:
            self._specs[queue] = (now + SPEC_CACHE_TTL, spec)
        return spec

    # -- publishing -----------------------------------------------------------------

    def publish(self, messages: Sequence[Message]) -> None:
        _common.check_messages(messages)
        if not messages:
            return
        names = sorted({m.queue for m in messages})
        limited = [q for q in names if self.spec(q).max_length is not None]
        try:
            if limited:
                self._publish_limited(messages, limited)
            else:
                now = time.time()
                rows = [message_row(m, 0, now) for m in messages]
                if len(rows) == 1:  # one statement is a transaction of its own
                    self.db.rowcount(INSERT, rows[0])
                else:
                    self.db.write(lambda tx: tx.executemany(INSERT, rows))
        except PublishError:
            raise
        except BrokerError as exc:
            raise PublishError(f"publish to queue(s) {names} failed: {exc}") from exc
        self.ring(names)

    def insert(self, tx: Tx, messages: Sequence[Message]) -> None:
        """Insert `messages` inside a write transaction of another `Database` on this
        file (the state store's, `fleet._colocated`); `ring` their queues after its
        commit. Queues with a `max_length` need `publish` (it counts them first)."""
        _common.check_messages(messages)
        now = time.time()
        tx.executemany(INSERT, [message_row(m, 0, now) for m in messages])

    def _publish_limited(self, messages: Sequence[Message], limited: list[str]) -> None:
        def tx_fn(tx: Tx) -> _common.Overflow:
            now = time.time()
            ready = {
                q: tx.execute(
                    "SELECT count(*) FROM fleet_messages WHERE queue = ? AND holder IS NULL",
                    (q,),
                ).fetchone()[0]
                for q in limited
            }
            plan = _common.plan_overflow(messages, ready, self.spec)
            if plan.refused:
                return plan  # nothing written; the refused are buried below
            for queue, n in plan.drop_head.items():
                reason = f"max length {self.spec(queue).max_length} exceeded (dropped from head)"
                dropped = tx.execute(
                    f"DELETE FROM fleet_messages WHERE id IN (SELECT id FROM fleet_messages"
                    f" WHERE queue = ? AND holder IS NULL ORDER BY id LIMIT ?)"
                    f" RETURNING {MESSAGE_COLS}",
                    (queue, n),
                ).fetchall()
                self._bury(tx, [(*row, reason, now) for row in dropped])
            self._bury(tx, [(*message_row(m, 0, now)[:6], why, now) for m, why in plan.dead])
            tx.executemany(INSERT, [message_row(m, 0, now) for m in plan.accept])
            return plan

        plan = self.db.write(tx_fn)
        if plan.refused:
            if plan.refused_dead:
                now = time.time()
                rows = [(*message_row(m, 0, now)[:6], why, now) for m, why in plan.refused_dead]
                self.db.write(lambda tx: self._bury(tx, rows))
            raise plan.error(self.spec)

    def _bury(self, tx: Tx, rows: list[tuple[Any, ...]]) -> None:
        """Insert dead letters (rows: message columns, reason, at), honouring
        `dead_letter: false` queues (dropped instead)."""
        keep = [r for r in rows if self.spec(r[0]).dead_letter]
        for row in rows:
            if not self.spec(row[0]).dead_letter:
                log.warning("dropped message %s of queue %r: %s", row[2], row[0], row[6])
        if keep:
            tx.executemany(BURY, keep)

    # -- doorbells ------------------------------------------------------------------

    def ring(self, queues: Iterable[str]) -> None:
        """Wake the consumers of `queues` (after a commit made messages ready there).

        Never raises: the commit already happened, and a consumer not woken still finds
        the messages at its next safety-net check.
        """
        try:
            addresses: set[str] = set()
            for queue in queues:
                addresses.update(self._consumer_addresses(queue))
            gone = [a for a in addresses if _doorbell.send(a) is _doorbell.Outcome.GONE]
            if gone:
                self.forget_consumers(gone)
        except (BrokerError, OSError) as exc:
            log.warning("%s: could not ring the consumers of %s: %s", self.url, queues, exc)

    def _consumer_addresses(self, queue: str) -> tuple[str, ...]:
        now = time.monotonic()
        cached = self._addresses.get(queue)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = self.db.query(
            "SELECT address FROM fleet_listeners WHERE queue = ? AND kind = 'consumer'", (queue,)
        )
        found = tuple(r[0] for r in rows)
        self._addresses[queue] = (now + LISTENER_CACHE_TTL, found)
        return found

    def forget_consumers(self, addresses: Sequence[str]) -> None:
        """Remove consumers that no longer answer (their process is gone)."""
        log.info("removing %d gone consumer(s) of %s: %s", len(addresses), self.url, addresses)
        for part in chunks(addresses):
            self.db.rowcount(
                f"DELETE FROM fleet_listeners WHERE address IN ({placeholders(part)})", part
            )
        self._addresses.clear()

    # -- consumers and listeners ----------------------------------------------------

    def consumer(self, queues: Sequence[str], prefetch: int) -> SQLiteConsumer:
        _common.check_prefetch(prefetch)
        consumer = SQLiteConsumer(self, _common.check_queues(queues))
        self._children.add(consumer)
        return consumer

    def listener(self) -> SQLiteListener:
        listener = SQLiteListener(self)
        self._children.add(listener)
        return listener

    def notify(self, notes: Sequence[tuple[str, bytes]]) -> None:
        for address, payload in notes:
            patience = NOTIFY_PATIENCE
            if self._impatient.get(address, 0.0) > time.monotonic():
                patience = 0.0
            outcome = _doorbell.send(address, bytes(payload), patience=patience)
            if outcome is _doorbell.Outcome.FULL:
                now = time.monotonic()
                if len(self._impatient) > 1000:
                    self._impatient = {a: t for a, t in self._impatient.items() if t > now}
                self._impatient[address] = now + NOTIFY_GIVE_UP
            if outcome is not _doorbell.Outcome.SENT:
                log.debug("notification to %r not delivered: %s", address, outcome.value)

    # -- inspection and management --------------------------------------------------

    def purge(self, queue: str) -> int:
        return self.db.rowcount(
            "DELETE FROM fleet_messages WHERE queue = ? AND (holder IS NULL OR visible_at <= ?)",
            (queue, time.time()),
        )

    def stats(self, queue: str) -> QueueStats:
        now = time.time()
        ready, unacked, dead = self.db.query(
            "SELECT"
            " (SELECT count(*) FROM fleet_messages WHERE queue = ?1"
            "  AND (holder IS NULL OR visible_at <= ?2)),"
            " (SELECT count(*) FROM fleet_messages WHERE queue = ?1"
            "  AND holder IS NOT NULL AND visible_at > ?2),"
            " (SELECT count(*) FROM fleet_dead_letters WHERE queue = ?1)",
            (queue, now),
        )[0]
        rows = self.db.query(
            "SELECT address, pid FROM fleet_listeners WHERE queue = ? AND kind = 'consumer'",
            (queue,),
        )
        dead_pids = [a for a, pid in rows if not _doorbell.pid_alive(pid)]
        if dead_pids:
            self.forget_consumers(dead_pids)
        return QueueStats(queue, ready, unacked, len(rows) - len(dead_pids), dead)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        rows = self.db.query(
            "SELECT id, queue, body, reason, at, headers FROM fleet_dead_letters"
            " WHERE queue = ? ORDER BY id LIMIT ?",
            (queue, max(limit, 0)),
        )
        return [
            DeadLetter(q, bytes(body), reason, str(i), at, _common.headers_from(headers))
            for i, q, body, reason, at, headers in rows
        ]

    def redrive(self, queue: str, ids: Sequence[str] | None = None) -> int:
        if ids is not None:
            keys = [int(i) for i in ids if str(i).isdigit()]
            if not keys:
                return 0

        def tx_fn(tx: Tx) -> int:
            now = time.time()
            sql = f"DELETE FROM fleet_dead_letters WHERE queue = ?{{}} RETURNING id, {MESSAGE_COLS}"
            if ids is None:
                rows = tx.execute(sql.format(""), (queue,)).fetchall()
            else:
                rows = []
                for part in chunks(keys):
                    where = f" AND id IN ({placeholders(part)})"
                    rows += tx.execute(sql.format(where), (queue, *part)).fetchall()
            rows.sort()
            tx.executemany(INSERT, [(*row[1:6], 0, now) for row in rows])
            return len(rows)

        moved = self.db.write(tx_fn)
        if moved:
            self.ring([queue])
        return moved

    def purge_dead(self, queue: str) -> int:
        return self.db.rowcount("DELETE FROM fleet_dead_letters WHERE queue = ?", (queue,))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for child in list(self._children):
            child.close()
        self.db.close()

    def __repr__(self) -> str:
        return f"SQLiteBroker({self.url!r})"
