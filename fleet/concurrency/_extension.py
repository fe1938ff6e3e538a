"""`ConcurrencyExtension`: the decisions of concurrency control, behind the hooks.

Job: own the concurrency task options and apply them at the hooks of
`fleet.extensions` against a `LimitStore`: registration limits, idempotency keys and
the result cache in `before_publish`; running and rate limits in `before_claim`;
releases in `after_change`.

Contract:
- Tasks without concurrency options cost a dict lookup per hook call and no store
  command. A rate-limited task costs one `take` per claim; a running-limited one an
  `acquire` per claim and a `release` when it stops running; a registration-limited
  one a `remember` per call and a `forget` when it ends.
- `before_publish` returns `Reuse` decisions: for an idempotency key, the key's owner
  (kept `idempotency_ttl` seconds, finished or not); with `call_result_cache`, a
  successful invocation with the same arguments (less `disable_cache_args`) within
  `cache_ttl`; with `registration_concurrency`, the equivalent invocation still not
  final. Equivalent calls inside one batch collapse onto the first. With
  `on_diff_non_key_args="raise"`, a KEYS match whose other arguments differ raises
  `ExtensionError` naming them (and forgets what the batch remembered).
- An owner whose record is missing (`status` says None) for longer than `grace`, or
  that already ended (for registration), is stale: its memo is forgotten by
  compare-and-set and the call tries once more, so a crash between remembering and
  registering cannot block a key forever.
- `before_claim`: the running limit first (`acquire`, fair, joining the line when
  full: `Hold(until=now + recheck)`, the recheck being only a safety net: a release
  wakes the next waiter through `wake`), then the rate limit (`take`; a reservation in
  the future is `Hold(until=at, memo="rate:<at>")`, and the claim that comes back with
  that memo at or after `at`, and at most `SLACK` after it, runs without taking again;
  the start of a run is the claim's time, `ClaimBatch.now`, which the worker records
  as its RUNNING time). A deferred invocation keeps
  its running permit until its reservation (its start is already decided).
- `on_lead`: every `purge_every` seconds, `purge` (expired memos, idle rate logs).
- `after_change`: a running-limited invocation parked BLOCKED by its running limit
  (`AppliedChange.note` is the hold's reason) that already holds a permit (handed over
  while it was being parked, when `wake` found it still PENDING) is woken again;
  a running-limited invocation that leaves RUNNING/PAUSED for anything
  but each other, or ends, releases its permit (woken waiters go to `wake`); a
  registration-limited one that ends forgets its memo; a cached task's success is
  remembered for `cache_ttl`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from fleet.codec import Codec, get_codec
from fleet.concurrency._call import Call, refuse_diff
from fleet.concurrency._held import RATE_REASON, RUNNING_REASON
from fleet.concurrency._options import NO_POLICY, OPTIONS, Mode, Policy, RateLimit, policy_of
from fleet.concurrency._store import LimitStore, Memo
from fleet.extensions import (
    Applied,
    AppliedChange,
    Claim,
    ClaimBatch,
    Extension,
    Hold,
    PublishBatch,
    Reuse,
)
from fleet.status import FINAL, OWNED, Status

log = logging.getLogger("fleet.concurrency")
SLACK = 0.05
"""Seconds (at most; 5% of a shorter period) a deferred invocation may start after its
reservation: reservations are spaced as if the period were that much longer, so the
starts themselves (not only the reservations) never exceed the rate in any window.
One that comes back later than that takes a new reservation."""
_RUNNING = RUNNING_REASON
"""How the reason of a running-limit hold starts (`after_change` recognises it)."""
_Won = dict[str, tuple[str, str, bytes | None]]
"""Memo key -> (owner, its value, its encoded call if at hand): what a batch decided."""


def _no_wake(ids: Sequence[str]) -> None:
    log.warning("concurrency: no waker set; %d invocation(s) wait for their recheck", len(ids))


def _reserved(memo: str) -> float | None:
    """The rate reservation a `Hold.memo` carries, if any."""
    if not memo.startswith("rate:"):
        return None
    try:
        return float(memo[5:])
    except ValueError:
        return None


class ConcurrencyExtension(Extension):
    """Enforces the concurrency options; see the module docstring.

    Args:
        store: where permits, lines, budgets and memos live (`limit_store(state)`).
        options: a task's concurrency options by name (None: unknown task), for hooks
            whose input does not carry them (claims, changes).
        signature: a task's signature by name (None if unknown): binds arguments.
        codec: the codec of a given name (phase 2: the app's trusted codec).
        resolve: turns a large-value reference into the encoded call's bytes.
        load_args: an invocation's encoded call by id (for changes without it).
        status: an invocation's status by id, None when it does not exist.
        wake: moves invocations handed a permit from BLOCKED to PENDING (and publishes).
        clock: epoch seconds (tests inject their own).
        recheck: seconds after which a waiting invocation is looked at again anyway.
        running_ttl: seconds a running permit lasts without release (0: until released).
        registration_ttl: seconds a registration memo lasts (0: until the call ends).
        purge_every: seconds between the leader's purges of expired memos and idle
            rate logs (`on_lead`).
        rate_horizon: rate logs idle this long are purged (raised to the longest rate
            period parsed here).
        grace: seconds after which a memo whose owner has no record is stale (the
            owner's registration follows `before_publish` within this time).
    """

    task_options: ClassVar[frozenset[str]] = OPTIONS

    def __init__(
        self,
        store: LimitStore,
        *,
        options: Callable[[str], Mapping[str, Any] | None] = lambda task: None,
        signature: Callable[[str], inspect.Signature | None] = lambda task: None,
        codec: Callable[[str], Codec] = get_codec,
        resolve: Callable[[bytes], bytes] = lambda data: data,
        load_args: Callable[[str], bytes | None] = lambda invocation_id: None,
        status: Callable[[str], Status | None] | None = None,
        wake: Callable[[Sequence[str]], None] = _no_wake,
        clock: Callable[[], float] = time.time,
        recheck: float = 60.0,
        running_ttl: float = 0.0,
        registration_ttl: float = 0.0,
        purge_every: float = 300.0,
        rate_horizon: float = 86400.0,
        grace: float = 60.0,
    ) -> None:
        self.store, self.options, self.signature = store, options, signature
        self.codec, self.resolve, self.load_args = codec, resolve, load_args
        self.status, self.wake, self.clock = status, wake, clock
        self.recheck, self.running_ttl = recheck, running_ttl
        self.registration_ttl = registration_ttl
        self.purge_every, self.rate_horizon, self.grace = purge_every, rate_horizon, grace
        self._next_purge = 0.0
        self._policies: dict[str, Policy] = {}

    def policy(self, task: str, options: Mapping[str, Any] | None = None) -> Policy:
        """The task's parsed options (cached; `options` given: parsed from them)."""
        found = self._policies.get(task)
        if found is None:
            given = options if options is not None else self.options(task)
            mine = {k: v for k, v in (given or {}).items() if k in OPTIONS}
            found = policy_of(mine, self.signature(task)) if mine else NO_POLICY
            if found.rate is not None:
                self.rate_horizon = max(self.rate_horizon, found.rate.period)
            self._policies[task] = found
        return found

    def invalidate(self, task: str) -> None:
        """Forget the parsed options of `task` (it was defined again)."""
        self._policies.pop(task, None)

    # -- before_publish ---------------------------------------------------------------

    def before_publish(self, batch: PublishBatch) -> Sequence[Reuse]:
        policy = self.policy(batch.task, batch.options)
        keys = batch.idempotency_keys
        if not policy.at_publish and not any(keys):
            return ()
        now = self.clock()
        reuses: list[Reuse] = []
        won: _Won = {}
        remembered: list[tuple[str, str]] = []
        try:
            for i, invocation_id in enumerate(batch.ids):
                call = Call(self, batch.task, batch.args[i], batch.codec)
                idem = keys[i] if i < len(keys) else ""
                reuse = self._publish_one(policy, call, invocation_id, idem, now, won, remembered)
                if reuse is not None:
                    reuses.append(reuse)
        except Exception:
            # The batch is refused: what it remembered must not make others reuse ids
            # that will never be registered (best effort; stale owners are also
            # detected later through `status`).
            for memo_key, holder in remembered:
                with contextlib.suppress(Exception):
                    self.store.forget(memo_key, holder)
            raise
        return reuses

    def _publish_one(
        self,
        policy: Policy,
        call: Call,
        invocation_id: str,
        idem: str,
        now: float,
        won: _Won,
        remembered: list[tuple[str, str]],
    ) -> Reuse | None:
        if idem:
            memo_key = f"idem:{call.task}:{idem}"
            owner = self._own(memo_key, invocation_id, now, policy.idempotency_ttl, won)
            remembered.append((memo_key, invocation_id))
            if owner != invocation_id:
                return Reuse(invocation_id, owner, f"idempotency key {idem!r}")
        if policy.cache:
            memo_key = "cache:" + call.key(Mode.ARGUMENTS, exclude=policy.disable_cache_args)
            memo = self.store.recall(memo_key, now=now)
            if memo is not None and self._status(memo.holder) is not None:
                return Reuse(invocation_id, memo.holder, "cached result")
        reg = policy.registration
        if not reg.enabled:
            return None
        memo_key = "reg:" + call.key(reg.mode, policy.key_arguments)
        check = reg.mode is Mode.KEYS and policy.on_diff_non_key_args == "raise"
        value = call.key(Mode.ARGUMENTS) if check else ""
        known = won.get(memo_key)
        if known is not None:
            owner, owner_value, owner_data = known
        else:
            memo = self.store.remember(
                memo_key, invocation_id, now=now, ttl=self.registration_ttl, value=value
            )
            if memo.holder != invocation_id and self._stale(memo, now, final_is_stale=True):
                self.store.forget(memo_key, memo.holder)
                memo = self.store.remember(
                    memo_key, invocation_id, now=now, ttl=self.registration_ttl, value=value
                )
            owner, owner_value, owner_data = memo.holder, memo.value, None
            if owner == invocation_id:
                owner_data = call.data
                remembered.append((memo_key, invocation_id))
            won[memo_key] = (owner, owner_value, owner_data)
        if owner == invocation_id:
            return None
        if check and owner_value != value:
            if owner_data is None:
                owner_data = self.load_args(owner)
            refuse_diff(call, owner, policy, owner_data)
        return Reuse(invocation_id, owner, f"registration_concurrency {reg.mode.value}")

    def _own(self, memo_key: str, holder: str, now: float, ttl: float, won: _Won) -> str:
        known = won.get(memo_key)
        if known is not None:
            return known[0]
        memo = self.store.remember(memo_key, holder, now=now, ttl=ttl)
        if memo.holder != holder and self._stale(memo, now, final_is_stale=False):
            self.store.forget(memo_key, memo.holder)
            memo = self.store.remember(memo_key, holder, now=now, ttl=ttl)
        owner = memo.holder
        won[memo_key] = (owner, "", None)
        return owner

    def _status(self, invocation_id: str) -> Status | None:
        return Status.PENDING if self.status is None else self.status(invocation_id)

    def _stale(self, memo: Memo, now: float, final_is_stale: bool) -> bool:
        """Whether `memo`'s owner is gone: its record does not exist although the memo
        is older than `grace` (a younger one may still be on its way to the store), or,
        with `final_is_stale`, it ended without its end being seen."""
        if self.status is None:
            return False
        status = self.status(memo.holder)
        if status is None:
            return memo.at <= now - self.grace
        return final_is_stale and status in FINAL

    # -- before_claim -----------------------------------------------------------------

    def before_claim(self, claims: ClaimBatch) -> Sequence[Hold]:
        holds: list[Hold] = []
        now = claims.now
        for claim in claims.claims:
            policy = self.policy(claim.task)
            if policy.at_claim:
                hold = self._claim_one(policy, claim, now)
                if hold is not None:
                    holds.append(hold)
        return holds

    def _claim_one(self, policy: Policy, claim: Claim, now: float) -> Hold | None:
        call = Call(self, claim.task, claim.args, claim.codec)
        run = policy.running
        if run.enabled:
            key = "run:" + call.key(run.mode, policy.key_arguments)
            grant = self.store.acquire(
                key,
                claim.invocation_id,
                limit=run.limit,
                now=now,
                ttl=self.running_ttl,
                since=claim.created or now,
            )
            if grant.woken:
                self.wake(grant.woken)
            if not grant.acquired:
                reason = (
                    f"{_RUNNING} {run.mode.value} (limit {run.limit}): held by "
                    f"{', '.join(grant.holders)}; waiting, #{grant.position} in line"
                )
                return Hold(claim.invocation_id, now + self.recheck, reason)
        rate = policy.rate
        if rate is None:
            return None
        at = _reserved(claim.memo)
        slack = min(SLACK, rate.period * SLACK)
        if at is not None and now > at + slack:
            at = None  # back too late to start under its reservation: take anew
        if at is None:
            key = "rate:" + call.key(Mode.KEYS, policy.rate_key)
            at = self.store.take(key, RateLimit(rate.count, rate.period + slack), now=now)
        # else: its reservation, taken when it was first deferred (never taken twice)
        if at <= now:
            return None
        reason = f"{RATE_REASON} {rate}: deferred {at - now:.3f} s"
        return Hold(claim.invocation_id, at, reason, memo=f"rate:{at!r}")

    # -- on_lead ------------------------------------------------------------------------

    def on_lead(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + self.purge_every
        purged = self.store.purge(now=now, rates_before=now - self.rate_horizon)
        if purged:
            log.info("concurrency: purged %d expired memo(s) and idle rate log(s)", purged)

    # -- after_change -----------------------------------------------------------------

    def after_change(self, applied: Applied) -> None:
        for change in applied.changes:
            policy = self.policy(change.task)
            if policy.registration.enabled or policy.running.enabled or policy.cache:
                self._changed(policy, change)

    def _changed(self, policy: Policy, change: AppliedChange) -> None:
        src, dst = change.source, change.status
        if src is None:
            return
        run, reg = policy.running, policy.registration
        stops = dst in FINAL or dst is Status.RETRY or (src in OWNED and dst not in OWNED)
        releases = run.enabled and stops
        forgets = reg.enabled and dst in FINAL
        caches = policy.cache and dst is Status.SUCCESS
        # Parked for a running limit: it may have been handed a permit between its
        # claim and this change, when a wake could not move it yet (still PENDING).
        parked = run.enabled and dst is Status.BLOCKED and change.note.startswith(_RUNNING)
        if not (releases or forgets or caches or parked):
            return
        data = change.args if change.args is not None else self.load_args(change.invocation_id)
        if data is None:
            log.warning(
                "concurrency: no arguments for %s; its limits wait for their expiry",
                change.invocation_id,
                extra={"invocation_id": change.invocation_id, "task": change.task},
            )
            return
        call = Call(self, change.task, data, change.codec or "msgpack")
        now = self.clock()
        if releases:
            key = "run:" + call.key(run.mode, policy.key_arguments)
            woken = self.store.release(key, change.invocation_id, now=now)
            if woken:
                self.wake(woken)
        if parked:
            key = "run:" + call.key(run.mode, policy.key_arguments)
            if change.invocation_id in self.store.permits(key, now=now).holders:
                self.wake([change.invocation_id])
        if forgets:
            self.store.forget(
                "reg:" + call.key(reg.mode, policy.key_arguments), change.invocation_id
            )
        if caches:
            key = "cache:" + call.key(Mode.ARGUMENTS, exclude=policy.disable_cache_args)
            self.store.remember(key, change.invocation_id, now=now, ttl=policy.cache_ttl)
