"""Waiting on a condition with a deadline (never a fixed sleep).

Contract: `wait_until(check, what, timeout)` returns as soon as `check()` is true; it
polls every millisecond (cheap checks only) and fails the test naming `what` once
`timeout` seconds have passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    check: Callable[[], object], what: str = "the condition", timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.001)
