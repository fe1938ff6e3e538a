"""When the supervisor replaces a child that ended: at once, or after a crash-loop backoff."""

from __future__ import annotations

import signal

from fleet.worker.process import EXIT_HARD_LIMIT
from fleet.worker.supervisor import restart_delay

KILLED = -signal.SIGKILL


def test_a_running_child_killed_from_outside_is_replaced_at_once() -> None:
    # Killed every 2 s (an OOM killer, chaos testing): no backoff builds up.
    failures = 0
    for _ in range(5):
        failures, delay = restart_delay(KILLED, 2.0, failures)
        assert (failures, delay) == (0, 0.0)


def test_a_child_killed_while_it_starts_counts_as_a_crash() -> None:
    assert restart_delay(KILLED, 0.2, 0) == (1, 0.5)
    assert restart_delay(KILLED, 0.2, 1) == (2, 1.0)


def test_crashes_in_a_row_back_off_up_to_30_s() -> None:
    delays = []
    failures = 0
    for _ in range(9):
        failures, delay = restart_delay(1, 0.5, failures)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    # Another signal (a segfault) is a crash like an exception.
    assert restart_delay(-signal.SIGSEGV, 3.0, 0) == (1, 0.5)


def test_clean_and_hard_limit_exits_and_long_lives_reset_the_count() -> None:
    assert restart_delay(0, 0.5, 4) == (0, 0.0)
    assert restart_delay(EXIT_HARD_LIMIT, 0.5, 4) == (0, 0.0)
    assert restart_delay(1, 60.0, 4) == (0, 0.0)
