"""The extension dispatcher (fleet.extensions): which hooks run, in what order, and what
happens to their exceptions. No I/O."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest

from fleet.extensions import (
    Applied,
    AppliedChange,
    Call,
    Claim,
    ClaimBatch,
    Dispatcher,
    Extension,
    ExtensionError,
    Hold,
    PublishBatch,
)
from fleet.status import Status

CHANGE = AppliedChange("inv-1", "pkg.a", Status.RUNNING, Status.SUCCESS, b"", "msgpack")
BATCH = PublishBatch("pkg.a", ("inv-1",), (b"",), "msgpack")
CLAIMS = ClaimBatch((Claim("inv-1", "pkg.a", b"", "msgpack"),), "w1", 0.0)


class Recorder(Extension):
    task_options: ClassVar[frozenset[str]] = frozenset({"recorded"})

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def __repr__(self) -> str:
        return f"Recorder({self.name!r})"

    def after_change(self, applied: Applied) -> None:
        self.seen.append(f"{self.name}:{applied.changes[0].invocation_id}")

    def around_call(self, call: Call, proceed: Callable[[], Any]) -> Any:
        self.seen.append(f"{self.name}:in")
        value = proceed()
        self.seen.append(f"{self.name}:out")
        return value


class Inner(Recorder):
    task_options: ClassVar[frozenset[str]] = frozenset()


class Refuser(Extension):
    def before_publish(self, batch: PublishBatch) -> None:
        raise ExtensionError(f"no {batch.task}")

    def before_claim(self, claims: ClaimBatch) -> Sequence[Hold]:
        return [Hold(c.invocation_id, 5.0, "limit") for c in claims.claims]


class Broken(Extension):
    def before_publish(self, batch: PublishBatch) -> None:
        raise KeyError("bug")

    def after_change(self, applied: Applied) -> None:
        raise RuntimeError("after boom")

    def on_lead(self, now: float) -> None:
        raise RuntimeError("lead boom")


def test_only_overriding_extensions_are_listed_per_hook() -> None:
    seen: list[str] = []
    rec, ref = Recorder("r", seen), Refuser()
    d = Dispatcher([rec, ref, Extension()])
    assert d.after_change_hooks == (rec,)
    assert d.around_call_hooks == (rec,)
    assert d.before_publish_hooks == (ref,)
    assert d.before_claim_hooks == (ref,)
    assert d.on_lead_hooks == () and d.services_hooks == () and d.bind_hooks == ()
    assert Dispatcher().after_change_hooks == ()
    assert d.option_owners == {"recorded": rec}


def test_around_call_nests_first_outermost() -> None:
    seen: list[str] = []
    d = Dispatcher([Recorder("a", seen), Inner("b", seen)])
    call = Call("inv-1", "pkg.a", 1, (1,), {})

    def run() -> int:
        seen.append("run")
        return 42

    assert d.around_call(call, run) == 42
    assert seen == ["a:in", "b:in", "run", "b:out", "a:out"]


def test_before_hooks_refuse_and_decide() -> None:
    d = Dispatcher([Refuser()])
    with pytest.raises(ExtensionError, match=r"no pkg\.a"):
        d.before_publish(BATCH)
    assert d.before_claim(CLAIMS) == [Hold("inv-1", 5.0, "limit")]


def test_a_broken_before_hook_is_named_and_chained() -> None:
    with pytest.raises(ExtensionError, match=r"Broken.*before_publish") as info:
        Dispatcher([Broken()]).before_publish(BATCH)
    assert isinstance(info.value.__cause__, KeyError)


def test_after_hooks_log_and_swallow(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    d = Dispatcher([Broken(), Recorder("r", seen)])
    with caplog.at_level(logging.ERROR, logger="fleet.extensions"):
        d.after_change(Applied((CHANGE,)))
        d.on_lead(1.0)
    assert seen == ["r:inv-1"]  # the broken one did not stop the next
    assert "after boom" in caplog.text and "lead boom" in caplog.text
    assert any(getattr(r, "invocation_id", "") == "inv-1" for r in caplog.records)
    d.after_change(Applied(()))  # nothing applied: no hook runs
    assert seen == ["r:inv-1"]


def test_bad_extensions_are_refused() -> None:
    with pytest.raises(ExtensionError, match="object"):
        Dispatcher([object()])  # type: ignore[list-item]
    with pytest.raises(ExtensionError, match="'recorded'"):
        Dispatcher([Recorder("a", []), Recorder("b", [])])
