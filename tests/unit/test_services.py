"""A test whose service will not start fails under CI; it never skips there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.services import unavailable

TESTS = Path(__file__).parents[1]


def test_unavailable_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="RabbitMQ could not be started: boom"):
        unavailable("RabbitMQ", RuntimeError("boom"))
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        unavailable("RabbitMQ", RuntimeError("boom"))


def test_every_service_start_failure_goes_through_unavailable() -> None:
    """An `except ServiceError` in a test module must call `unavailable`, not skip."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ExceptHandler) or node.type is None:
                continue
            if "ServiceError" not in ast.unparse(node.type):
                continue
            calls = {ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)}
            if "unavailable" not in calls:
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert not offenders, f"skips (or ignores) a service that will not start: {offenders}"
