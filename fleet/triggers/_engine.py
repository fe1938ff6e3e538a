"""The trigger engine: evaluates conditions and fires each (trigger, occurrence) once.

Job: `TriggerExtension` watches status changes (`after_change`), custom events
(`emit`) and the leader's ticks (`on_lead`: cron, and recovery of firings recorded but
never submitted), and starts the target task through the `submit` callable it is given.

Contract:
- Watched set: the definitions are read from the store at most once per `refresh`
  seconds per process (and after `invalidate()`), indexed by watched task and event
  name. A status change of a task nobody watches costs a dict lookup; no store round
  trip. Paused (disabled) triggers are not watched.
- Firing keys: the source invocation id (status, result, exception), the event id
  (events; `emit` draws a new one per call), the tick in UTC ISO 8601 (cron), the
  newest hit's source per part joined by '+' (all_of), 'manual:<id>' (`fire`).
- Exactly once: a firing is recorded first, with the invocation id chosen before
  submitting and the encoded call, as pending; only the process whose record was new
  submits, then settles it (with the submit's error, if any). A firing whose call
  cannot be built (`DeriveError`) is recorded settled with that error and starts
  nothing; the trigger stays active. Recovery (leader, every `grace / 2` seconds):
  a firing still pending `grace` seconds after it was recorded is settled when its
  invocation exists, else submitted again with the same id and call. `submit` must
  therefore refuse or ignore an invocation id that is already registered, so a slow
  first submit racing recovery starts one invocation.
- Composite `all_of`: each part met records a hit (trigger, part, source); the trigger
  fires when every part has a hit within `window` seconds. `any_of` fires per source.
- Cron (leader only): per trigger, the ticks in (last evaluated, now] by its catch-up
  policy (`fleet.triggers._cron.due`); a leader that just took over starts from the
  newest tick fired (else from the definition's `created`). Nothing is read from the
  store between ticks: the next due time is kept in memory.
- Sweep (leader, with `recent`): a process that commits an outcome and dies before
  evaluating it would lose the firing; the leader evaluates again, every `grace / 2`
  seconds, the final changes of watched tasks committed in the previous window ending
  `grace` seconds ago (the first sweep looks back `4 * grace`). The firing record and
  the hits make a second evaluation of the same change a no-op.
- Errors never escape `after_change` / `on_lead` (the dispatcher would log them
  anyway): one broken trigger does not stop the others.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fleet._prepare import new_id
from fleet.codec import decode_call, get_codec
from fleet.errors import ConfigError
from fleet.extensions import Applied, AppliedChange, Extension
from fleet.triggers import Firing, Hit, Kind, TriggerDefinition, TriggerStore, _cron
from fleet.triggers._conditions import DeriveError, Source, derive_call, matches

log = logging.getLogger("fleet.triggers")

Submit = Callable[[str, tuple[Any, ...], dict[str, Any], str], object]
"""submit(task, args, kwargs, invocation_id): start `task` under that invocation id."""
Recent = Callable[[Sequence[str], float, float], Sequence[AppliedChange]]
"""recent(tasks, since, until): final changes of these tasks committed in [since, until)."""


@dataclass(frozen=True, slots=True)
class Watcher:
    """One condition (or composite part) of a trigger, as the index holds it."""

    definition: TriggerDefinition
    part: int | None
    """Index in the composite's parts; None for a direct condition."""


@dataclass(frozen=True)
class Watched:
    """The watched set: enabled definitions indexed by what they watch."""

    by_task: Mapping[str, tuple[Watcher, ...]] = field(default_factory=dict)
    by_event: Mapping[str, tuple[Watcher, ...]] = field(default_factory=dict)
    crons: tuple[TriggerDefinition, ...] = ()
    definitions: Mapping[str, TriggerDefinition] = field(default_factory=dict)
    """Every definition, paused ones included (recovery needs them)."""

    @classmethod
    def of(cls, definitions: Sequence[TriggerDefinition]) -> Watched:
        by_task: dict[str, list[Watcher]] = {}
        by_event: dict[str, list[Watcher]] = {}
        crons = []
        for d in definitions:
            if not d.enabled:
                continue
            cond = d.condition
            if cond.kind is Kind.CRON:
                crons.append(d)
                continue
            composite = cond.kind in (Kind.ALL, Kind.ANY)
            parts = cond.parts if composite else (cond,)
            for i, part in enumerate(parts):
                index = by_event if part.kind is Kind.EVENT else by_task
                index.setdefault(part.subject, []).append(Watcher(d, i if composite else None))
        return cls(
            {k: tuple(v) for k, v in by_task.items()},
            {k: tuple(v) for k, v in by_event.items()},
            tuple(crons),
            {d.id: d for d in definitions},
        )


def _no_signature(task: str) -> inspect.Signature | None:
    return None


class TriggerExtension(Extension):
    """Evaluates triggers; see the module docstring.

    Args:
        store: where definitions, firings and hits live.
        submit: starts a task under a given invocation id (phase 2: the app's submit).
        exists: whether an invocation id is registered (recovery).
        signature: a task's signature by name (None if unknown here): filters bind the
            watched call's arguments to names, and a derived call is checked against it.
        load_args: an invocation's encoded call by id, for a change that does not carry
            it (only called for watched tasks whose filters or derivation need it).
        resolve: turns a large-value reference into the value's bytes.
        recent: final changes of watched tasks in a time range (the leader's sweep);
            None: no sweep.
        clock: epoch seconds (tests inject their own).
        refresh: seconds between reloads of the watched set.
        grace: seconds before a pending firing is recovered.
        on_time: how late a cron tick may be fired under the `skip` policy.
        codec: the codec of a change that names none (the app's: a task's results and
            arguments use it).
    """

    task_options: ClassVar[frozenset[str]] = frozenset({"triggers"})

    def __init__(
        self,
        store: TriggerStore,
        submit: Submit,
        *,
        exists: Callable[[str], bool],
        signature: Callable[[str], inspect.Signature | None] = _no_signature,
        load_args: Callable[[str], bytes | None] = lambda invocation_id: None,
        resolve: Callable[[bytes], bytes] = lambda data: data,
        recent: Recent | None = None,
        clock: Callable[[], float] = time.time,
        refresh: float = 2.0,
        grace: float = 60.0,
        on_time: float = 60.0,
        new_id: Callable[[], str] = new_id,
        codec: str = "msgpack",
    ) -> None:
        self.store, self.submit, self.exists = store, submit, exists
        self.signature, self.load_args, self.resolve = signature, load_args, resolve
        self.clock, self.refresh, self.grace, self.on_time = clock, refresh, grace, on_time
        self.new_id, self.recent, self.codec = new_id, recent, codec
        self._swept: float | None = None
        self._watched = Watched()
        self._expires = 0.0
        self._last: dict[str, float] = {}
        self._next: dict[str, tuple[float, object]] = {}
        self._next_recovery = 0.0

    # -- the watched set ------------------------------------------------------------------

    def watched(self) -> Watched:
        """The cached watched set, reloaded when older than `refresh` seconds."""
        now = self.clock()
        if now >= self._expires:
            self._expires = now + self.refresh
            try:
                self._watched = Watched.of(self.store.triggers())
            except Exception:  # keep evaluating with what we had; try again later
                log.exception("cannot reload trigger definitions")
        return self._watched

    def invalidate(self) -> None:
        """Reload the watched set on next use (after adding, changing or removing one)."""
        self._expires = 0.0

    # -- hooks ----------------------------------------------------------------------------

    def after_change(self, applied: Applied) -> None:
        by_task = self.watched().by_task
        if not by_task:
            return
        for change in applied.changes:
            watchers = by_task.get(change.task)
            if watchers:
                self._evaluate(watchers, self._source_of(change), change.at or self.clock())

    def emit(self, name: str, payload: Mapping[str, Any] | None = None) -> str:
        """Emit a custom event; fire the triggers watching it. Returns the event id."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"event name {name!r} must be a non-empty string")
        data = dict(payload or {})
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(f"event {name!r}: payload key {key!r} is not a string")
        event_id = self.new_id()
        watchers = self.watched().by_event.get(name)
        if watchers:
            self._evaluate(watchers, Source.of_event(event_id, name, data), self.clock())
        return event_id

    def on_lead(self, now: float) -> None:
        watched = self.watched()
        for definition in watched.crons:
            try:
                self._tick(definition, now)
            except Exception:
                log.exception("cron trigger %r failed", definition.id, extra=_ids(definition))
        if now >= self._next_recovery:
            self._next_recovery = now + self.grace / 2
            self.recover(now)
            self.sweep(now)

    # -- evaluating -----------------------------------------------------------------------

    def _source_of(self, change: AppliedChange) -> Source:
        def load_args() -> bytes | None:
            data = change.args if change.args is not None else self.load_args(change.invocation_id)
            return None if data is None else self.resolve(data)

        def load_result() -> bytes | None:
            return None if change.result is None else self.resolve(change.result)

        return Source(
            key=change.invocation_id,
            task=change.task,
            status=change.status,
            error=change.error,
            codec=change.codec or self.codec,
            load_args=load_args,
            load_result=load_result,
            signature=self.signature,
        )

    def _evaluate(self, watchers: Sequence[Watcher], source: Source, at: float) -> None:
        for watcher in watchers:
            d = watcher.definition
            cond = d.condition if watcher.part is None else d.condition.parts[watcher.part]
            try:
                if matches(cond, source, d.codec):
                    self._met(watcher, source, at)
            except Exception:
                log.exception(
                    "trigger %r failed on %s", d.id, source.label, extra=_ids(d, source.key)
                )

    def _met(self, watcher: Watcher, source: Source, at: float) -> None:
        d = watcher.definition
        if watcher.part is None or d.condition.kind is Kind.ANY:
            self.fire_definition(d, source.key, source)
            return
        window = d.condition.window
        self.store.record_hit(Hit(d.id, watcher.part, source.key, at), forget_before=at - window)
        newest: dict[int, Hit] = {}
        for hit in self.store.hits(d.id, since=at - window):
            newest[hit.part] = hit  # oldest first: the last one per part is the newest
        if len(newest) == len(d.condition.parts):
            key = "+".join(newest[i].key for i in range(len(d.condition.parts)))
            self.fire_definition(d, key, source)

    def fire_definition(
        self, d: TriggerDefinition, key: str, source: Source, label: str = ""
    ) -> str | None:
        """Fire `d` once for `key`: record, then submit. Returns the invocation id
        started, or None (fired before, or the call could not be built)."""
        now = self.clock()
        label = label or source.label
        try:
            args, kwargs, call = derive_call(d, source, self.signature)
        except DeriveError as exc:
            if self.store.record_firing(Firing(d.id, key, now, "", label, str(exc))):
                log.warning("trigger %r did not fire: %s", d.id, exc, extra=_ids(d, source.key))
            return None
        invocation_id = self.new_id()
        firing = Firing(d.id, key, now, invocation_id, label, "", call, pending=True)
        if not self.store.record_firing(firing):
            return None  # this occurrence fired already, here or elsewhere
        self._submit(d, key, args, kwargs, invocation_id)
        return invocation_id

    def _submit(
        self,
        d: TriggerDefinition,
        key: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        invocation_id: str,
        recovering: bool = False,
    ) -> None:
        error = ""
        try:
            self.submit(d.task, args, kwargs, invocation_id)
        except Exception as exc:
            if recovering and self.exists(invocation_id):  # the first submit won the race
                self.store.settle_firing(d.id, key)
                return
            error = f"{type(exc).__name__}: {exc}"
            log.warning("trigger %r: submit failed: %s", d.id, error, extra=_ids(d, invocation_id))
        else:
            log.info("trigger %r fired (%s)", d.id, key, extra=_ids(d, invocation_id))
        self.store.settle_firing(d.id, key, error)

    def fire(self, trigger_id: str) -> str | None:
        """Fire a trigger now, whatever its condition (`fleet triggers fire ID`)."""
        found = [d for d in self.store.triggers() if d.id == trigger_id]
        if not found:
            raise ConfigError(f"no trigger {trigger_id!r}")
        key = f"manual:{self.new_id()}"
        return self.fire_definition(found[0], key, Source(key=key), label="manual")

    def _tick(self, d: TriggerDefinition, now: float) -> None:
        due, cond = self._next.get(d.id, (0.0, None))
        if cond == d.condition and now < due:
            return
        last = self._last.get(d.id)
        if last is None or cond != d.condition:
            last = self._last_fired(d)
        for tick in _cron.due(d.condition, last, now, self.on_time):
            key = _cron.tick_key(tick)
            self.fire_definition(d, key, Source(key=key), label=f"cron:{key}")
        self._last[d.id] = now
        self._next[d.id] = (_cron.next_tick(d.condition, now), d.condition)

    def _last_fired(self, d: TriggerDefinition) -> float:
        for firing in self.store.firings(d.id, limit=10):
            tick = _cron.tick_of(firing.key)
            if tick is not None:
                return tick
        return d.created or self.clock()

    def sweep(self, now: float) -> None:
        """Evaluate again the final changes of watched tasks committed in the window
        before `now - grace` (see the module docstring)."""
        by_task = self.watched().by_task
        until = now - self.grace
        since = until - 4 * self.grace if self._swept is None else self._swept
        if self.recent is None or not by_task or until <= since:
            return
        try:
            changes = self.recent(sorted(by_task), since, until)
        except Exception:
            log.exception("cannot read recent changes of watched tasks")
            return
        self._swept = until
        self.after_change(Applied(tuple(changes)))

    def recover(self, now: float) -> None:
        """Settle or submit again the firings pending for longer than `grace`."""
        definitions = self.watched().definitions
        for f in self.store.pending_firings(before=now - self.grace):
            d = definitions.get(f.trigger)
            try:
                if self.exists(f.invocation):
                    self.store.settle_firing(f.trigger, f.key)
                elif d is None:
                    self.store.settle_firing(f.trigger, f.key, "trigger deleted before submitting")
                else:
                    log.warning("trigger %r: submitting %s again", d.id, f.key, extra=_ids(d))
                    args, kwargs = decode_call(get_codec(d.codec), f.call)
                    self._submit(d, f.key, args, kwargs, f.invocation, recovering=True)
            except Exception:
                log.exception("cannot recover firing %r of %r", f.key, f.trigger)


def _ids(d: TriggerDefinition, invocation_id: str = "") -> dict[str, str]:
    return {"trigger": d.id, "task": d.task, "invocation_id": invocation_id}
