"""Requeueing invocations whose owner is gone, and releasing held ones that are due.

Job: put invocations back on the broker: those owned by a dead worker process, those
owned by a live one that does not hold them (dropped by an error between claim and
run), those held (scheduled, retry) whose due time has come, and pending ones whose
message may have been lost (the producer died between registering and publishing).

Contract: every move is a compare-and-set in the state store first (so two services
racing requeue an invocation once), then a publish. If the publish fails the
invocation stays PENDING with its deadline made due at once (the error propagates),
and the leader's next `republish_stale` pass publishes it again: nothing is dropped,
nothing waits `pending_timeout`. Once the broker confirms the publish, the deadline is cleared
(`fleet._followup`), as producers do for the invocations they submit: a PENDING
invocation is republished only while its deadline stands, i.e. when no publish of it
was ever confirmed, never because its message waits long in a backlog. An invocation
that has lost more runs to dead workers than `max_recoveries` allows fails with
`WorkerLostError` instead of killing workers forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from fleet import _followup, _transitions
from fleet._envelope import from_record, pack
from fleet._exceptions import error_info
from fleet.broker import Message
from fleet.errors import WorkerLostError
from fleet.signing import signer
from fleet.state import Change, InvocationRecord, Query
from fleet.status import HELD, OWNED, Status

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger(__name__)


def _attempt_limit(app: Fleet, task: str) -> int:
    known = app.tasks.get(task)
    retries = known.options.max_retries if known is not None else None
    if retries is None:
        retries = app.settings.max_retries
    return retries + 1 + app.settings.max_recoveries


def requeue(
    app: Fleet, records: Sequence[InvocationRecord], by: str, note: str, *, refund: bool = False
) -> int:
    """Move records (owned, held or pending) to PENDING and publish them again.

    With `refund`, the runs of owned records ended through no fault of their own (their
    process was replaced for another invocation's hard time limit): the attempt their
    claim counted is given back, so it is not charged toward `max_recoveries`.
    """
    if not records:
        return 0
    runtime = app.runtime()
    now = time.time()
    deadline = now + app.settings.pending_timeout
    changes = []
    for record in records:
        owner = record.owner if record.status in OWNED else None
        if (
            record.status in OWNED
            and not refund
            and record.attempt >= _attempt_limit(app, record.task)
        ):
            lost = WorkerLostError(
                f"{record.task} lost {record.attempt} run(s) to dead workers; giving up"
            )
            changes.append(
                Change(
                    record.id,
                    Status.FAILED,
                    frozenset({record.status}),
                    by=by,
                    expect_owner=owner,
                    error=error_info(lost),
                    note=note,
                )
            )
            continue
        changes.append(
            Change(
                record.id,
                Status.PENDING,
                frozenset({record.status}),
                by=by,
                expect_owner=owner,
                due=deadline,
                note=note,
                refund_attempt=refund and record.status in OWNED and record.attempt > 0,
            )
        )
    tasks = [r.task for r in records]
    applied = _transitions.apply(runtime.state, changes, app.dispatcher, tasks, at=now)
    sign = signer(app.settings).headers
    bodies = [
        (record, pack(from_record(record)))
        for record, change, ok in zip(records, changes, applied, strict=True)
        if ok and change.to is Status.PENDING
    ]
    messages = [Message(r.queue, body, r.id, 0, sign(body)) for r, body in bodies]
    if messages:
        try:
            runtime.declare(sorted({m.queue for m in messages}))
            runtime.broker.publish(messages)
        except Exception:
            _due_now(app, [r for r, _ in bodies], by)
            raise
        _followup.of(app).published(messages)
    for record, change, ok in zip(records, changes, applied, strict=True):
        if ok:
            log.info(
                "%s %s -> %s (%s)",
                record.task,
                record.status.value,
                change.to.value,
                note,
                extra={"invocation_id": record.id, "task": record.task},
            )
    return len(messages)


def _due_now(app: Fleet, records: Sequence[InvocationRecord], by: str) -> None:
    """Make `records`, just moved to PENDING but whose publish failed, due at once: the
    next `republish_stale` pass (every `recovery_interval`) publishes them again, rather
    than one after `pending_timeout`. If the store fails too, that deadline stands."""
    now = time.time()
    note = "its publish failed; due again at once"
    changes = [
        Change(r.id, Status.PENDING, frozenset({Status.PENDING}), by=by, due=now, note=note)
        for r in records
    ]
    try:
        _transitions.apply(
            app.runtime().state, changes, app.dispatcher, [r.task for r in records], at=now
        )
    except Exception:
        log.warning("could not make %d unpublished invocation(s) due", len(records), exc_info=True)


def requeue_uncharged(app: Fleet, ids: Collection[str], owner: str) -> set[str]:
    """Requeue those of `ids` that `owner` still runs as it exits to be replaced for
    another invocation's hard time limit, giving back the attempt of the run cut short;
    return the ids requeued."""
    records = app.runtime().state.get(sorted(ids))
    mine = [r for r in records if r.status in OWNED and r.owner == owner]
    note = "requeued uncharged: its process was replaced for another invocation's hard limit"
    requeue(app, mine, owner, note, refund=True)
    return {r.id for r in mine}


def recover_owned(app: Fleet, owners: Collection[str], by: str, note: str) -> int:
    """Requeue every RUNNING or PAUSED invocation owned by one of `owners`."""
    if not owners:
        return 0
    state = app.runtime().state
    total = 0
    while True:
        records = state.find(Query(statuses=OWNED, owners=list(owners), limit=500))
        if not records:
            return total
        moved = requeue(app, records, by, note)
        total += moved
        if len(records) < 500:
            return total


def recover_orphans(app: Fleet, by: str, now: float | None = None) -> int:
    """Requeue owned invocations whose owner has no fresh heartbeat (leader service)."""
    now = time.time() if now is None else now
    state = app.runtime().state
    horizon = now - app.settings.dead_after
    live = [r.id for r in state.runners() if r.beat >= horizon and not r.stopped]
    records = state.find(Query(statuses=OWNED, not_owners=live, updated_before=horizon, limit=500))
    return requeue(app, records, by, "owner's heartbeat stopped")


def recover_unheld(
    app: Fleet,
    by: str,
    now: float | None = None,
    seen: dict[str, tuple[str, float, float]] | None = None,
    margin: float | None = None,
) -> int:
    """Requeue owned invocations that their live owner does not hold (leader service).

    A worker process's heartbeat lists the invocations it holds (`RunnerRecord.in_hand`);
    one RUNNING or PAUSED under a live process that its heartbeat does not list was
    dropped by it (an error between claim and run), and `recover_orphans` never looks at
    it since its owner beats. Two races are ruled out:

    - Claimed just after the heartbeat was written (not listed yet): only records last
      updated (`updated`, written by the owner itself) more than `margin` seconds
      (default `heartbeat_interval`) before the owner's heartbeat `beat` are suspects.
    - Finished just before the heartbeat, its outcome not committed yet: with `seen` (a
      dict the caller keeps between calls), a suspect is requeued only when the previous
      call found it a suspect too, under an earlier heartbeat of the same owner and with
      the same `updated`; without `seen`, at once.

    Args:
        app: the app whose state store and broker are used.
        by: the runner making the changes (recorded in the history).
        now: the time of the check (default: now).
        seen: suspects of the previous call, updated in place.
        margin: seconds a record must predate its owner's heartbeat.

    Returns:
        How many invocations were published again.
    """
    now = time.time() if now is None else now
    settings = app.settings
    margin = settings.heartbeat_interval if margin is None else margin
    state = app.runtime().state
    horizon = now - settings.dead_after
    live = {
        r.id: r
        for r in state.runners()
        if r.kind == "process" and r.beat >= horizon and not r.stopped
    }
    suspects: dict[str, tuple[str, float, float]] = {}
    records: list[InvocationRecord] = []
    if live:
        # Each owner's listed ones come first at most: the rest of the limit is theirs.
        held = sum(len(r.in_hand) for r in live.values())
        latest = max(r.beat for r in live.values()) - margin
        query = Query(statuses=OWNED, owners=list(live), updated_before=latest, limit=held + 500)
        for record in state.find(query):
            runner = live[record.owner]
            if record.updated < runner.beat - margin and record.id not in runner.in_hand:
                suspects[record.id] = (record.owner, record.updated, runner.beat)
                before = seen.get(record.id) if seen is not None else None
                if seen is None or (
                    before is not None
                    and before[:2] == (record.owner, record.updated)
                    and before[2] < runner.beat
                ):
                    records.append(record)
    if seen is not None:
        for invocation_id, sighting in suspects.items():
            before = seen.get(invocation_id)
            if before is None or before[:2] != sighting[:2]:
                seen[invocation_id] = sighting  # the first sighting of this claim
        for invocation_id in list(seen):
            if invocation_id not in suspects:
                del seen[invocation_id]
    return requeue(app, records, by, "its live owner does not hold it")


def release_due(app: Fleet, by: str, now: float | None = None) -> int:
    """Publish held invocations (scheduled, retry) whose due time has come."""
    now = time.time() if now is None else now
    records = app.runtime().state.find(Query(statuses=HELD, due_before=now, limit=1000))
    return requeue(app, records, by, "due")


def release(app: Fleet, ids: Sequence[str], by: str, now: float | None = None) -> int:
    """Publish those of `ids` that are held and due (`fleet._followup` releases short
    holds at their due time rather than at the leader's next tick)."""
    now = time.time() if now is None else now
    records = [
        r
        for r in app.runtime().state.get(ids)
        if r.status in HELD and r.due is not None and r.due <= now
    ]
    return requeue(app, records, by, "due")


def republish_stale(app: Fleet, by: str, now: float | None = None) -> int:
    """Publish again pending invocations whose deadline passed: no publish of them was
    ever confirmed (the producer died, or its confirm was never recorded)."""
    now = time.time() if now is None else now
    records = app.runtime().state.find(Query(statuses=[Status.PENDING], due_before=now, limit=1000))
    return requeue(app, records, by, "pending past its deadline; published again")
