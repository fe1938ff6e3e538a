"""Cron ticks: which ticks of a cron condition are due, under its catch-up policy.

Job: read a cron condition in its time zone with croniter and answer, for a leader
that last evaluated it at `last` and now stands at `now`, which ticks to fire; name
each tick with a firing key.

Contract:
- A tick is an instant (epoch seconds) croniter yields for the expression read in the
  condition's time zone (UTC when none), so daylight-saving changes follow croniter.
- `due(cond, last, now, on_time)` returns the ticks in (last, now] to fire, oldest
  first, by policy: `skip` (default) fires the newest of them only if it is at most
  `on_time` seconds old (missed ticks are dropped); `once` fires the newest of them
  whatever its age (missed ticks coalesce into one); `all` fires each of them, the
  newest `limit` at most (default 100). Only that many ticks are computed, walking
  back from `now`, so a long outage costs no more than the bound.
- `tick_key(tick)` is the tick in UTC ISO 8601 (e.g. '2026-12-04T17:35:00+00:00');
  `tick_of(key)` reads it back.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from fleet.triggers import DEFAULT_CATCHUP_LIMIT, Condition, Kind


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo | Any:
    return ZoneInfo(name) if name else UTC


def _iter(cond: Condition, start: float) -> Any:
    croniter: Any = importlib.import_module("croniter")
    return croniter.croniter(cond.cron, datetime.fromtimestamp(start, _zone(cond.timezone)))


def next_tick(cond: Condition, after: float) -> float:
    """The first tick strictly after `after`."""
    return float(_iter(cond, after).get_next(float))


def previous_ticks(cond: Condition, before: float, count: int, floor: float) -> list[float]:
    """Up to `count` ticks in (floor, before], newest first."""
    if count <= 0 or before <= floor:
        return []
    it = _iter(cond, before + 1e-3)  # get_prev is strict: include a tick at `before`
    found: list[float] = []
    while len(found) < count:
        tick = float(it.get_prev(float))
        if tick <= floor:
            break
        if tick <= before:
            found.append(tick)
    return found


def due(cond: Condition, last: float, now: float, on_time: float) -> list[float]:
    """The ticks in (last, now] to fire, oldest first; see the module docstring."""
    if cond.kind is not Kind.CRON:
        raise ValueError(f"{cond!r} is not a cron condition")
    policy = cond.catchup or "skip"
    bound = (cond.limit or DEFAULT_CATCHUP_LIMIT) if policy == "all" else 1
    ticks = previous_ticks(cond, now, bound, last)
    if policy == "skip":
        ticks = [t for t in ticks if now - t <= on_time]
    return sorted(ticks)


def tick_key(tick: float) -> str:
    return datetime.fromtimestamp(tick, UTC).isoformat()


def tick_of(key: str) -> float | None:
    """The tick a `tick_key` names, or None when `key` is not one (a manual firing)."""
    try:
        return datetime.fromisoformat(key).timestamp()
    except ValueError:
        return None
