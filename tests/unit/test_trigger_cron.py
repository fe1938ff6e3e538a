"""Cron ticks and catch-up policies (fleet.triggers._cron), on fixed instants."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.triggers import Condition
from fleet.triggers._cron import due, next_tick, tick_key, tick_of

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
MIN = 60.0


def test_skip_fires_only_a_tick_on_time() -> None:
    every5 = Condition.on_cron("*/5 * * * *")
    assert due(every5, NOON - 1, NOON + 2, on_time=30) == [NOON]
    assert due(every5, NOON, NOON + 4 * MIN, on_time=30) == []  # no tick in between
    # A leader gone for an hour: the missed ticks are dropped, the last is too late.
    assert due(every5, NOON - 60 * MIN, NOON + 2 * MIN, on_time=30) == []
    assert due(every5, NOON - 60 * MIN, NOON + 10, on_time=30) == [NOON]


def test_once_coalesces_missed_ticks() -> None:
    every5 = Condition.on_cron("*/5 * * * *", catchup="once")
    assert due(every5, NOON - 60 * MIN, NOON + 2 * MIN, on_time=30) == [NOON]
    assert due(every5, NOON, NOON + 2 * MIN, on_time=30) == []


def test_all_fires_each_missed_tick_up_to_the_bound() -> None:
    every5 = Condition.on_cron("*/5 * * * *", catchup="all", limit=3)
    assert due(every5, NOON - 60 * MIN, NOON + 2 * MIN, on_time=30) == [
        NOON - 10 * MIN,
        NOON - 5 * MIN,
        NOON,
    ]
    unbounded = Condition.on_cron("*/5 * * * *", catchup="all")
    assert len(due(unbounded, NOON - 60 * MIN, NOON, on_time=30)) == 12
    assert len(due(unbounded, NOON - 10_000 * MIN, NOON, on_time=30)) == 100  # the default


def test_time_zone_and_seconds() -> None:
    paris9 = Condition.on_cron("0 9 * * *", timezone="Europe/Paris")
    assert tick_key(next_tick(paris9, NOON)) == "2026-03-03T08:00:00+00:00"  # UTC+1 in March
    summer = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    assert tick_key(next_tick(paris9, summer)) == "2026-07-01T07:00:00+00:00"  # UTC+2
    hourly = Condition.on_cron("@hourly")
    assert next_tick(hourly, NOON) == NOON + 60 * MIN
    each_second = Condition.on_cron("* * * * * *")
    assert due(each_second, NOON - 3, NOON, on_time=5) == [NOON]
    every_s = Condition.on_cron("* * * * * *", catchup="all")
    assert due(every_s, NOON - 3, NOON, on_time=5) == [NOON - 2, NOON - 1, NOON]


def test_tick_keys_read_back() -> None:
    assert tick_key(NOON) == "2026-03-02T12:00:00+00:00"
    assert tick_of(tick_key(NOON)) == NOON
    assert tick_of("manual:abc") is None
