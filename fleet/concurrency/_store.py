"""`LimitStore`: where permits, waiting lines, rate budgets and remembered keys live.

Job: the small interface every backend implements for `ConcurrencyExtension`, the
records it returns, and the pure rules of a waiting line and of a rate budget that the
memory, SQLite and MongoDB stores all apply (so the three cannot drift apart).

Contract (permit-shaped, after Temporal's slot supplier):
- Every method is atomic in the store: two processes racing on one key see one of the
  two orders, never a mix. Nothing reads first and writes after: SQLite runs each call
  in one write transaction (BEGIN IMMEDIATE), MongoDB in one document per key changed
  by compare-and-set on a version, or by one update command.
- No method blocks on another holder: "waiting" means joining a line and returning at
  once; the caller parks the invocation (BLOCKED) and is told when to wake it.
- Times are epoch seconds passed in (`now`), never read from the store's clock, so a
  test's injected clock drives every backend alike. `ttl` 0 means "never expires".
- The waiting line is fair: holders are granted free permits strictly in order of
  (since, holder), oldest first; a newcomer never takes a permit an older waiter is
  owed. A release (or an expired permit) hands the freed permit to the oldest waiter
  inside the same atomic step, and returns it so the caller wakes it: no polling.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from fleet._value_class import value_class
from fleet.concurrency._options import RateLimit


@value_class
class Grant:
    """What `acquire` did."""

    acquired: bool
    """The holder holds a permit of the key (now or already)."""
    holders: tuple[str, ...]
    """Who holds the key's permits after the call (sorted)."""
    position: int = 0
    """Not acquired and waiting: 1-based place in the line; 0 otherwise."""
    woken: tuple[str, ...] = ()
    """Other waiters this call handed a permit to (an expired one freed): wake them."""


@value_class
class Memo:
    """A remembered key: who owns it, and since when."""

    key: str
    holder: str
    value: str = ""
    """Whatever the owner stored with it (e.g. the digest of its other arguments)."""
    at: float = 0.0
    expires: float = 0.0
    """0: never."""


@value_class
class Permits:
    """The permits of one key, for inspection (`fleet status`, tests)."""

    holders: tuple[str, ...] = ()
    waiters: tuple[str, ...] = ()
    """Oldest first."""


class LimitStore(ABC):
    """Storage of `ConcurrencyExtension`; see the module docstring."""

    @abstractmethod
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
        """Take one of the `limit` permits of `key` for `holder`, or queue for one.

        Called by `before_claim` for a running limit, once per claim of a limited task.
        Never blocks. Atomic: the expiry of old permits, the grant and the joining of
        the line are one step. Idempotent: a holder that holds gets `acquired=True`
        again; a waiter keeps its place. With `since` None it only tries (it does not
        join the line; one already in it stays); otherwise it joins at (since, holder)
        when no permit is free for it, which it is only when every older waiter holds
        one.
        """

    @abstractmethod
    def release(self, key: str, holder: str, *, now: float) -> tuple[str, ...]:
        """Give back `holder`'s permit of `key`, or take it out of the line.

        Called by `after_change` when a limited invocation stops running (finished,
        retried, requeued, cancelled while waiting). Never blocks. Atomic: the freed
        permit is handed to the oldest waiter in the same step. Returns the waiters that
        were handed a permit (the caller wakes them); () when nothing was held.
        """

    @abstractmethod
    def permits(self, key: str, *, now: float) -> Permits:
        """The live holders and the line of `key` (read only, for inspection)."""

    @abstractmethod
    def take(self, key: str, rate: RateLimit, *, now: float) -> float:
        """Reserve one start under `rate` for `key`; returns when it may start.

        Called by `before_claim` once per claim of a rate-limited task: one store
        command. Never blocks. Atomic. The reserved starts of a key never number more
        than `rate.count` in any window of `rate.period` seconds, and never go back in
        time: the result is max(now, the last reservation, the count-th last + period).
        A result above `now` is a deferral: the budget is spent at that time already.
        """

    @abstractmethod
    def remember(
        self, key: str, holder: str, *, now: float, ttl: float = 0.0, value: str = ""
    ) -> Memo:
        """Make `holder` the owner of `key` unless someone owns it; returns the owner.

        Called by `before_publish` (registration limits, idempotency keys: the owner is
        the invocation every equivalent call gets) and by `after_change` (the result
        cache, on success). Never blocks. Atomic: of racing callers exactly one becomes
        the owner (a unique key in the store), and an expired memo is replaced in the
        same step.
        """

    @abstractmethod
    def recall(self, key: str, *, now: float) -> Memo | None:
        """The live memo of `key`, if any (read only)."""

    @abstractmethod
    def forget(self, key: str, holder: str) -> bool:
        """Delete the memo of `key` if `holder` owns it (compare-and-set); True if it did.

        Called by `after_change` when a registration-limited invocation ends, and when
        an owner turns out to be gone (its record expired or never registered)."""

    @abstractmethod
    def purge(self, *, now: float, rates_before: float) -> int:
        """Delete memos expired at `now` and rate logs whose last start is before
        `rates_before` (nothing a live decision still needs); returns how many.

        Called by the leader (`on_lead`), now and then. Never blocks on holders."""


# -- the rules every backend applies -------------------------------------------------


@dataclass
class Line:
    """The permits of one key: holders (-> expiry) and the waiting line, sorted."""

    holders: dict[str, float] = field(default_factory=dict)
    waiters: list[tuple[float, str]] = field(default_factory=list)
    ttl: float = 0.0
    limit: int = 1
    """The limit and permit ttl of the last `acquire` (a release promotes by them)."""

    def to_doc(self) -> dict[str, Any]:
        return {
            "holders": [[h, e] for h, e in sorted(self.holders.items())],
            "waiters": [[s, h] for s, h in self.waiters],
            "ttl": self.ttl,
            "limit": self.limit,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Line:
        if not doc:
            return cls()
        return cls(
            {str(h): float(e) for h, e in doc.get("holders", [])},
            [(float(s), str(h)) for s, h in doc.get("waiters", [])],
            float(doc.get("ttl", 0.0)),
            int(doc.get("limit", 1)),
        )

    @property
    def empty(self) -> bool:
        return not self.holders and not self.waiters

    def _expire(self, now: float) -> None:
        for holder in [h for h, e in self.holders.items() if e and e <= now]:
            del self.holders[holder]

    def _promote(self, limit: int, now: float) -> list[str]:
        woken = []
        while self.waiters and len(self.holders) < limit:
            _, holder = self.waiters.pop(0)
            self.holders[holder] = now + self.ttl if self.ttl else 0.0
            woken.append(holder)
        return woken

    def acquire(
        self, holder: str, limit: int, now: float, ttl: float, since: float | None
    ) -> Grant:
        self.ttl, self.limit = ttl, limit
        self._expire(now)
        if holder not in self.holders:
            queued = any(h == holder for _, h in self.waiters)
            if not queued:
                bisect.insort(self.waiters, (since if since is not None else now, holder))
            woken = self._promote(limit, now)
            if holder not in self.holders and since is None and not queued:
                self.waiters = [w for w in self.waiters if w[1] != holder]
        else:
            woken = self._promote(limit, now)
        others = tuple(h for h in woken if h != holder)
        acquired = holder in self.holders
        position = 0
        if not acquired:
            position = next((i + 1 for i, w in enumerate(self.waiters) if w[1] == holder), 0)
        return Grant(acquired, tuple(sorted(self.holders)), position, others)

    def release(self, holder: str, now: float) -> tuple[str, ...]:
        self.holders.pop(holder, None)
        self.waiters = [w for w in self.waiters if w[1] != holder]
        self._expire(now)
        return tuple(self._promote(self.limit, now))

    def permits(self, now: float) -> Permits:
        live = sorted(h for h, e in self.holders.items() if not e or e > now)
        return Permits(tuple(live), tuple(h for _, h in self.waiters))


def reserve(log: list[float], rate: RateLimit, now: float) -> float:
    """The next start under `rate` after the starts in `log` (oldest first); appends
    it to `log` and trims `log` to the last `rate.count` (see `LimitStore.take`)."""
    at = now
    if log:
        at = max(at, log[-1])
    if len(log) >= rate.count:
        at = max(at, log[-rate.count] + rate.period)
    log.append(at)
    del log[: -rate.count]
    return at


def live(memo: Memo | None, now: float) -> Memo | None:
    """`memo` unless it expired."""
    if memo is None or (memo.expires and memo.expires <= now):
        return None
    return memo
