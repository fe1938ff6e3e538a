"""Matching sources against conditions and deriving the triggered call
(fleet.triggers._conditions). No I/O."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import pytest

from fleet.codec import encode_call, get_codec
from fleet.state import ErrorInfo
from fleet.status import Status
from fleet.triggers import Condition, TriggerDefinition
from fleet.triggers._conditions import DeriveError, Source, derive_call, matches
from fleet.triggers._declare import function

MSGPACK = get_codec("msgpack")


def extract(region: str, day: int = 1, *, full: bool = False) -> None: ...


def notify(order: int, total: float = 0.0) -> None: ...


SIGNATURES = {"pkg.extract": inspect.signature(extract), "pkg.notify": inspect.signature(notify)}


def signature(task: str) -> inspect.Signature | None:
    return SIGNATURES.get(task)


class TooBig(ValueError):
    pass


@dataclass
class Report:
    total: float
    rows: int


@function
def big_order(source: Source) -> bool:
    return bool(source.payload.get("amount", 0) > 100)


@function
def order_args(source: Source) -> dict[str, Any]:
    return {"order": source.payload["order_id"] * 10}


@function
def not_a_mapping(source: Source) -> Any:
    return [1, 2]


def change(
    status: Status,
    *args: Any,
    result: Any = None,
    error: ErrorInfo | None = None,
    task: str = "pkg.extract",
    **kwargs: Any,
) -> Source:
    encoded = encode_call(MSGPACK, task, args, kwargs)
    data = None if result is None else MSGPACK.encode(result)
    return Source(
        key="inv-1",
        task=task,
        status=status,
        error=error,
        load_args=lambda: encoded,
        load_result=lambda: data,
        signature=signature,
    )


def test_status_any_or_one() -> None:
    assert matches(Condition.on_status("pkg.extract"), change(Status.RUNNING))
    assert matches(Condition.on_status("pkg.extract", Status.FAILED), change(Status.FAILED))
    assert not matches(Condition.on_status("pkg.extract", Status.FAILED), change(Status.SUCCESS))
    assert not matches(Condition.on_status("pkg.other"), change(Status.SUCCESS))


def test_result_with_and_without_a_value_filter() -> None:
    assert matches(Condition.on_result("pkg.extract"), change(Status.SUCCESS, result=3))
    assert not matches(Condition.on_result("pkg.extract"), change(Status.FAILED))
    seven = Condition.on_result("pkg.extract", MSGPACK.encode(7))
    assert matches(seven, change(Status.SUCCESS, result=7))
    assert not matches(seven, change(Status.SUCCESS, result=8))
    assert not matches(
        Condition.on_result("pkg.extract", MSGPACK.encode(1)), change(Status.SUCCESS, result=True)
    )  # True == 1 in Python, not here
    as_json = Condition.on_result("pkg.extract", get_codec("json").encode([1, 2]))
    assert matches(as_json, change(Status.SUCCESS, result=[1, 2]), codec="json")


def test_exception_matches_subclasses() -> None:
    too_big = ErrorInfo(f"{__name__}.TooBig", "too big")
    failed = change(Status.FAILED, error=too_big)
    assert matches(Condition.on_exception("pkg.extract"), failed)
    assert matches(Condition.on_exception("pkg.extract", f"{__name__}.TooBig"), failed)
    assert matches(Condition.on_exception("pkg.extract", "builtins.ValueError"), failed)
    assert matches(Condition.on_exception("pkg.extract", "builtins.Exception"), failed)
    assert not matches(Condition.on_exception("pkg.extract", "builtins.KeyError"), failed)
    gone = change(Status.FAILED, error=ErrorInfo("gone.module.Error", "x"))
    assert matches(Condition.on_exception("pkg.extract", "gone.module.Error"), gone)
    assert not matches(Condition.on_exception("pkg.extract", "builtins.ValueError"), gone)
    assert not matches(Condition.on_exception("pkg.extract"), change(Status.SUCCESS))


def test_argument_filters_bind_positional_arguments_and_defaults() -> None:
    eu = Condition.on_status("pkg.extract", where={"region": "eu", "day": 1})
    assert matches(eu, change(Status.SUCCESS, "eu"))  # day from the default
    assert matches(eu, change(Status.SUCCESS, region="eu", day=1))
    assert not matches(eu, change(Status.SUCCESS, "us"))
    assert not matches(eu, change(Status.SUCCESS, "eu", 2))
    full = Condition.on_status("pkg.extract", where={"full": True})
    assert matches(full, change(Status.SUCCESS, "eu", full=True))
    assert not matches(
        Condition.on_status("pkg.extract", where={"day": True}), change(Status.SUCCESS, "eu", 1)
    )


def test_events_match_name_payload_and_a_registered_check() -> None:
    paid = Source.of_event("e1", "order.paid", {"order_id": 7, "amount": 250, "ok": True})
    assert matches(Condition.on_event("order.paid"), paid)
    assert matches(Condition.on_event("order.paid", {"order_id": 7, "ok": True}), paid)
    assert not matches(Condition.on_event("order.paid", {"order_id": 8}), paid)
    assert not matches(Condition.on_event("order.paid", {"missing": None}), paid)
    assert not matches(Condition.on_event("order.sent"), paid)
    check = f"{__name__}:big_order"
    assert matches(Condition.on_event("order.paid", check=check), paid)
    small = Source.of_event("e2", "order.paid", {"amount": 5})
    assert not matches(Condition.on_event("order.paid", check=check), small)
    assert not matches(Condition.on_status("order.paid"), paid)  # an event is not a task


def definition(**fields: Any) -> TriggerDefinition:
    fields.setdefault("condition", Condition.on_event("order.paid"))
    return TriggerDefinition(id="t1", name="t", task="pkg.notify", **fields)


PAID = Source.of_event("e1", "order.paid", {"order_id": 7, "amount": 250})


def test_fixed_and_derived_arguments() -> None:
    fixed = encode_call(MSGPACK, "pkg.notify", (), {"total": 1.5})
    d = definition(args=fixed, derive={"order": "payload.order_id"})
    args, kwargs, encoded = derive_call(d, PAID, signature)
    assert (args, kwargs) == ((), {"total": 1.5, "order": 7})
    assert MSGPACK.decode(encoded) == [[], {"total": 1.5, "order": 7}]
    done = change(Status.SUCCESS, "eu", 3, result=Report(9.5, 4))
    d = definition(derive={"order": "args.day", "total": "result.total"})
    assert derive_call(d, done, signature)[1] == {"order": 3, "total": 9.5}
    d = definition(function=f"{__name__}:order_args", derive={"total": "payload.amount"})
    assert derive_call(d, PAID, signature)[1] == {"total": 250, "order": 70}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"derive": {"order": "payload.nope"}}, r"'order'.*'payload' has no 'nope'"),
        ({"derive": {"order": "payload.order_id", "colour": "event"}}, "do not fit"),
        ({}, "do not fit task 'pkg.notify'"),  # order is required
        ({"function": f"{__name__}:not_a_mapping"}, "not a mapping"),
        ({"function": f"{__name__}:nowhere"}, "not registered"),
    ],
)
def test_a_call_that_cannot_be_built_is_a_derive_error(fields: Any, message: str) -> None:
    with pytest.raises(DeriveError, match=message):
        derive_call(definition(**fields), PAID, signature)


def test_an_unencodable_derived_argument_is_named() -> None:
    odd = Source.of_event("e1", "order.paid", {"order_id": object()})
    d = definition(derive={"order": "payload.order_id"})
    with pytest.raises(DeriveError, match=r"'order'.*object"):
        derive_call(d, odd, signature)
    # Unknown signature (the target's module is not imported here): no fit check.
    assert derive_call(definition(), PAID, lambda task: None)[:2] == ((), {})
