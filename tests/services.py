"""What a test does when a service it needs will not start.

Contract: `unavailable(what, exc)` skips the test on a laptop and fails it under CI
(`CI=true` or `CI=1`), with the reason: in CI a service that will not start is a broken
set-up, never a reason to pass.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(what: str, exc: BaseException) -> NoReturn:
    message = f"{what} could not be started: {exc}"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
