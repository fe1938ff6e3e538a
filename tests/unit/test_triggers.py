"""Trigger definitions as data (fleet.triggers): validation of conditions, no I/O."""

from __future__ import annotations

import pytest

from fleet.errors import ConfigError
from fleet.state import memory
from fleet.status import Status
from fleet.triggers import Condition, Kind, TriggerDefinition, trigger_store


def test_constructors_set_kind_and_subject() -> None:
    assert Condition.on_cron("@hourly").kind is Kind.CRON
    assert Condition.on_status("a.b", Status.SUCCESS).subject == "a.b"
    assert Condition.on_result("a.b").value is None
    assert Condition.on_exception("a.b").exception == ""
    assert Condition.on_event("upload", {"n": 1}).subject == "upload"


@pytest.mark.parametrize("expression", ["", "61 * * * *", "* * *", "every minute"])
def test_invalid_cron_is_named(expression: str) -> None:
    with pytest.raises(ConfigError, match="cron"):
        Condition.on_cron(expression)


def test_parameters_must_fit_the_kind() -> None:
    with pytest.raises(ConfigError, match="needs task"):
        Condition(Kind.STATUS, status=Status.SUCCESS)
    with pytest.raises(ConfigError, match="takes no cron"):
        Condition(Kind.EVENT, event="e", cron="* * * * *")
    with pytest.raises(ConfigError, match="needs task"):
        Condition.on_result("")
    with pytest.raises(ConfigError, match="'nested'"):
        Condition.on_event("e", {"nested": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="sometimes"):
        Condition("sometimes")  # type: ignore[arg-type]


def test_definition_needs_id_and_target() -> None:
    with pytest.raises(ConfigError, match="'nightly'"):
        TriggerDefinition("", "nightly", Condition.on_cron("0 3 * * *"), "pkg.report")
    with pytest.raises(ConfigError, match="Condition"):
        TriggerDefinition("t", "x", "0 3 * * *", "pkg.report")  # type: ignore[arg-type]


def test_trigger_store_of_a_state_store() -> None:
    assert trigger_store(memory.MemoryStateStore()) is not None
    with pytest.raises(ConfigError, match="does not store trigger"):
        trigger_store(object())
