"""ConcurrencyExtension's decisions, on the memory LimitStore with an injected clock."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from fleet.codec import encode_call, get_codec
from fleet.concurrency import ConcurrencyExtension, Limit, Mode, RateLimit
from fleet.concurrency._extension import SLACK
from fleet.concurrency._memory import MemoryLimitStore
from fleet.errors import ExtensionError
from fleet.extensions import (
    Applied,
    AppliedChange,
    Claim,
    ClaimBatch,
    Dispatcher,
    Hold,
    PublishBatch,
    Reuse,
)
from fleet.status import Status

CODEC = get_codec("msgpack")
T0 = 1_700_000_000.0


def charge(order: str, amount: int = 1, note: str = "") -> None:
    """The task every test limits."""


class CountingStore(MemoryLimitStore):
    """Counts store commands, to show which hooks cost one."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name in ("acquire", "release", "take", "remember", "recall", "forget", "permits"):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


@dataclass
class Fleetish:
    """What the extension is given in place of an app: options, records and a clock."""

    options: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    args: dict[str, bytes] = field(default_factory=dict)
    statuses: dict[str, Status] = field(default_factory=dict)
    woken: list[str] = field(default_factory=list)
    now: float = T0
    store: CountingStore = field(default_factory=CountingStore)

    def ext(self, **kwargs: Any) -> ConcurrencyExtension:
        return ConcurrencyExtension(
            self.store,
            options=self.options.get,
            signature=lambda task: inspect.signature(charge),
            load_args=self.args.get,
            status=self.statuses.get,
            wake=self.woken.extend,
            clock=lambda: self.now,
            **kwargs,
        )

    def publish(
        self, ext: ConcurrencyExtension, calls: list[tuple[str, bytes]], *keys: str
    ) -> dict[str, str]:
        """Publish calls of 'charge'; returns id -> the id its caller gets."""
        batch = PublishBatch(
            "charge",
            tuple(i for i, _ in calls),
            tuple(data for _, data in calls),
            "msgpack",
            self.options.get("charge", {}),
            idempotency_keys=tuple(keys),
        )
        reuses = {r.invocation_id: r.existing for r in ext.before_publish(batch)}
        for invocation_id, data in calls:
            if invocation_id not in reuses:
                self.args[invocation_id] = data
                self.statuses[invocation_id] = Status.PENDING
        return {i: reuses.get(i, i) for i, _ in calls}

    def change(self, ext: ConcurrencyExtension, iid: str, src: Status, dst: Status) -> None:
        self.statuses[iid] = dst
        ext.after_change(Applied((AppliedChange(iid, "charge", src, dst, self.args[iid]),)))

    def claim(self, ext: ConcurrencyExtension, *claims: Claim) -> dict[str, Hold]:
        holds = ext.before_claim(ClaimBatch(claims, "w1", self.now))
        return {h.invocation_id: h for h in holds}


def call(*args: object, **kwargs: object) -> bytes:
    return encode_call(CODEC, "charge", args, kwargs)


def claim(iid: str, data: bytes, created: float = T0, memo: str = "") -> Claim:
    return Claim(iid, "charge", data, "msgpack", created, memo)


def test_registration_task_mode_reuses_the_pending_one_until_it_ends() -> None:
    f = Fleetish({"charge": {"registration_concurrency": Mode.TASK}})
    ext = f.ext()
    assert f.publish(ext, [("a", call("x")), ("b", call("y"))]) == {"a": "a", "b": "a"}
    assert f.publish(ext, [("c", call("z"))]) == {"c": "a"}
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    assert f.publish(ext, [("d", call("z"))]) == {"d": "a"}
    f.change(ext, "a", Status.RUNNING, Status.SUCCESS)
    assert f.publish(ext, [("e", call("z"))]) == {"e": "e"}


def test_registration_arguments_mode_collapses_equal_calls_in_a_batch() -> None:
    f = Fleetish({"charge": {"registration_concurrency": "arguments"}})
    ext = f.ext()
    calls = [("a", call("x")), ("b", call(order="x", amount=1)), ("c", call("y"))]
    assert f.publish(ext, calls) == {"a": "a", "b": "a", "c": "c"}
    assert f.publish(ext, [("d", call("y", 1, ""))]) == {"d": "c"}


def test_registration_keys_mode_reuses_across_other_arguments() -> None:
    opts = {"registration_concurrency": "keys", "key_arguments": ("order",)}
    f = Fleetish({"charge": opts})
    ext = f.ext()
    assert f.publish(ext, [("a", call("x", 1)), ("b", call("x", 2))]) == {"a": "a", "b": "a"}


def test_on_diff_non_key_args_raise_names_the_arguments() -> None:
    opts = {
        "registration_concurrency": "keys",
        "key_arguments": ("order",),
        "on_diff_non_key_args": "raise",
    }
    f = Fleetish({"charge": opts})
    ext = f.ext()
    assert f.publish(ext, [("a", call("x", 1))]) == {"a": "a"}
    assert f.publish(ext, [("b", call("x", amount=1))]) == {"b": "a"}
    with pytest.raises(ExtensionError, match=r"'a'.*\['order'\].*\['amount'\]"):
        f.publish(ext, [("c", call("x", 2))])
    with pytest.raises(ExtensionError, match=r"'d'.*different \['note'\]"):
        f.publish(ext, [("d", call("y")), ("e", call("y", note="n"))])
    # The refused batch left nothing behind: 'y' is free again.
    assert f.publish(ext, [("f", call("y"))]) == {"f": "f"}


def test_an_owner_that_is_gone_or_ended_is_replaced() -> None:
    f = Fleetish({"charge": {"registration_concurrency": "task"}})
    ext = f.ext()
    f.publish(ext, [("a", call("x"))])
    f.statuses["a"] = Status.FAILED  # its end was never seen by after_change
    assert f.publish(ext, [("b", call("x"))]) == {"b": "b"}
    del f.statuses["b"]  # not registered yet: on its way, or its producer died
    assert f.publish(ext, [("c", call("x"))]) == {"c": "b"}
    f.now += 60  # the grace is over: it is not coming
    assert f.publish(ext, [("d", call("x"))]) == {"d": "d"}


def test_an_idempotency_key_yields_one_invocation_even_after_it_finished() -> None:
    f = Fleetish({"charge": {"idempotency_ttl": 100}})
    ext = f.ext()
    assert f.publish(ext, [("a", call("x")), ("b", call("x"))], "k7", "k7") == {
        "a": "a",
        "b": "a",
    }
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    f.change(ext, "a", Status.RUNNING, Status.SUCCESS)
    assert f.publish(ext, [("c", call("other"))], "k7") == {"c": "a"}
    assert f.publish(ext, [("d", call("x"))], "k8") == {"d": "d"}
    assert f.publish(ext, [("e", call("x"))]) == {"e": "e"}  # no key: no dedupe
    f.now += 100
    assert f.publish(ext, [("g", call("x"))], "k7") == {"g": "g"}


def test_the_result_cache_reuses_a_success_within_its_ttl() -> None:
    opts = {"call_result_cache": True, "cache_ttl": 60, "disable_cache_args": ("note",)}
    f = Fleetish({"charge": opts})
    ext = f.ext()
    assert f.publish(ext, [("a", call("x"))]) == {"a": "a"}
    assert f.publish(ext, [("b", call("x"))]) == {"b": "b"}  # not finished: no cache
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    f.change(ext, "b", Status.PENDING, Status.RUNNING)
    f.change(ext, "b", Status.RUNNING, Status.FAILED)
    assert f.publish(ext, [("c", call("x"))]) == {"c": "c"}  # failures are not cached
    f.change(ext, "a", Status.RUNNING, Status.SUCCESS)
    assert f.publish(ext, [("d", call("x", note="n"))]) == {"d": "a"}
    assert f.publish(ext, [("e", call("x", 2))]) == {"e": "e"}
    f.now += 60
    assert f.publish(ext, [("g", call("x"))]) == {"g": "g"}


def test_a_running_limit_holds_the_second_and_a_release_wakes_it() -> None:
    f = Fleetish({"charge": {"running_concurrency": "task"}})
    ext = f.ext(recheck=30)
    f.publish(ext, [("a", call("x")), ("b", call("y"))])
    assert f.claim(ext, claim("a", call("x"))) == {}
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    holds = f.claim(ext, claim("b", call("y")))
    assert holds["b"].until == T0 + 30
    assert "running_concurrency TASK (limit 1): held by a" in holds["b"].reason
    f.statuses["b"] = Status.BLOCKED
    assert f.woken == []
    f.change(ext, "a", Status.RUNNING, Status.SUCCESS)
    assert f.woken == ["b"]
    assert f.claim(ext, claim("b", call("y"))) == {}


def test_waiters_are_woken_oldest_first() -> None:
    f = Fleetish({"charge": {"running_concurrency": "task"}})
    ext = f.ext()
    f.publish(ext, [("a", call()), ("b", call()), ("c", call())])
    f.claim(ext, claim("a", call()))
    assert set(f.claim(ext, claim("c", call(), created=T0 + 2), claim("b", call()))) == {"b", "c"}
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    f.change(ext, "a", Status.RUNNING, Status.SUCCESS)
    assert f.woken == ["b"]
    f.change(ext, "b", Status.RUNNING, Status.RETRY)
    assert f.woken == ["b", "c"]


def test_a_keys_limit_of_two_per_key() -> None:
    opts = {"running_concurrency": Limit(Mode.KEYS, 2), "key_arguments": ("order",)}
    f = Fleetish({"charge": opts})
    ext = f.ext()
    claims = [claim(f"x{i}", call("x", i)) for i in range(3)] + [claim("y0", call("y"))]
    assert set(f.claim(ext, *claims)) == {"x2"}


def test_requeued_releases_and_paused_keeps_the_permit() -> None:
    f = Fleetish({"charge": {"running_concurrency": "task"}})
    ext = f.ext()
    f.publish(ext, [("a", call()), ("b", call())])
    f.claim(ext, claim("a", call()))
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    f.change(ext, "a", Status.RUNNING, Status.PAUSED)
    assert "b" in f.claim(ext, claim("b", call()))
    f.change(ext, "a", Status.PAUSED, Status.RUNNING)
    assert f.woken == []
    f.change(ext, "a", Status.RUNNING, Status.PENDING)  # its worker died: requeued
    assert f.woken == ["b"]


def test_a_rate_limit_defers_with_a_reservation_it_then_uses() -> None:
    # Reservations are spaced as if the period were SLACK longer: a start up to SLACK
    # after its reservation still keeps every window of starts within the rate.
    f = Fleetish({"charge": {"rate_limit": "2/s"}})
    ext = f.ext()
    holds = f.claim(ext, *(claim(i, call()) for i in "abc"))
    assert list(holds) == ["c"]
    due = T0 + 1 + SLACK
    assert holds["c"].until == due and holds["c"].memo == f"rate:{due!r}"
    assert "rate_limit 2/1s: deferred 1.050 s" in holds["c"].reason
    f.now = due + SLACK  # back a little late: still within its slack
    f.store.calls.clear()
    assert f.claim(ext, claim("c", call(), memo=holds["c"].memo)) == {}
    assert f.store.calls == []  # its budget was spent when it was deferred
    assert f.claim(ext, claim("d", call())) == {}
    assert f.claim(ext, claim("e", call()))["e"].until == pytest.approx(due + 1 + SLACK)


def test_a_deferred_claim_back_too_late_takes_a_new_reservation() -> None:
    f = Fleetish({"charge": {"rate_limit": "1/s"}})
    ext = f.ext()
    holds = f.claim(ext, claim("a", call()), claim("b", call()))
    memo = holds["b"].memo
    f.now = holds["b"].until + 2 * SLACK  # its start would crowd the next window
    f.store.calls.clear()
    again = f.claim(ext, claim("b", call(), memo=memo))["b"]
    assert len(f.store.calls) == 1  # a new reservation, after the one it missed
    assert again.memo != memo and again.until == pytest.approx(T0 + 2 * (1 + SLACK))


def test_a_rate_limit_key_gives_each_value_its_own_budget() -> None:
    f = Fleetish({"charge": {"rate_limit": "1/m", "rate_limit_key": ("order",)}})
    ext = f.ext()
    holds = f.claim(ext, claim("a", call("x")), claim("b", call("y")), claim("c", call("x", 2)))
    assert list(holds) == ["c"] and holds["c"].until == T0 + 60 + SLACK


def test_store_commands_only_for_limited_tasks() -> None:
    f = Fleetish({"charge": {}, "other": {}})
    ext = f.ext()
    f.publish(ext, [("a", call())])
    f.claim(ext, claim("a", call()))
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    f.change(ext, "a", Status.RUNNING, Status.SUCCESS)
    assert f.store.calls == []
    f.options["charge"] = {"rate_limit": "10/s"}
    rated = f.ext()
    f.claim(rated, claim("b", call()))
    f.change(rated, "a", Status.PENDING, Status.RUNNING)
    f.change(rated, "a", Status.RUNNING, Status.SUCCESS)
    assert f.store.calls == ["take"]  # one store command per invocation


def test_through_the_dispatcher() -> None:
    f = Fleetish({"charge": {"registration_concurrency": "task"}})
    d = Dispatcher([f.ext()])
    assert d.option_owners["registration_concurrency"] is d.extensions[0]
    batch = PublishBatch("charge", ("a", "b"), (call(), call()), "msgpack", f.options["charge"])
    assert d.before_publish(batch) == [Reuse("b", "a", "registration_concurrency TASK")]
    bad = PublishBatch("other", ("c",), (call(),), "msgpack", {"rate_limit": "often"})
    with pytest.raises(ExtensionError, match="'often'"):
        d.before_publish(bad)
    assert d.before_claim(ClaimBatch((claim("a", call()),), "w", T0)) == []


def test_rate_limit_type_is_reported_readably() -> None:
    assert str(RateLimit.parse("100/m")) == "100/60s"


def test_a_deferred_claim_back_early_waits_for_its_reservation_without_taking() -> None:
    f = Fleetish({"charge": {"rate_limit": "1/s"}})
    ext = f.ext()
    f.claim(ext, claim("a", call()))
    memo = f.claim(ext, claim("b", call()))["b"].memo
    f.now = T0 + 0.5  # released early (a clock ahead)
    f.store.calls.clear()
    again = f.claim(ext, claim("b", call(), memo=memo))["b"]
    assert (again.until, again.memo, f.store.calls) == (T0 + 1 + SLACK, memo, [])
    assert f.claim(ext, claim("c", call(), memo="rate:garbage"))["c"].until == T0 + 2 * (1 + SLACK)


def test_the_leader_purges_now_and_then() -> None:
    f = Fleetish({"charge": {"rate_limit": "1/h", "idempotency_ttl": 10}})
    ext = f.ext(purge_every=60, rate_horizon=1)
    f.publish(ext, [("a", call())], "k")
    f.claim(ext, claim("a", call()))
    ext.on_lead(T0 + 10)
    assert f.store.recall("idem:charge:k", now=T0) is None
    assert f.claim(ext, claim("b", call()))["b"].until == T0 + 3600 + SLACK  # log kept
    f.store.calls.clear()
    ext.on_lead(T0 + 30)
    assert f.store.calls == []
    ext.on_lead(T0 + 3600 * 3)
    assert f.claim(ext, claim("c", call())) == {}


def test_a_permit_handed_over_while_being_parked_is_not_lost() -> None:
    f = Fleetish({"charge": {"running_concurrency": "task"}})
    ext = f.ext()
    f.publish(ext, [("a", call()), ("b", call())])
    f.claim(ext, claim("a", call()))
    f.change(ext, "a", Status.PENDING, Status.RUNNING)
    hold = f.claim(ext, claim("b", call()))["b"]
    f.change(ext, "a", Status.RUNNING, Status.SUCCESS)  # before b is BLOCKED: wake misses
    assert f.woken == ["b"]
    f.statuses["b"] = Status.BLOCKED
    change = AppliedChange("b", "charge", Status.PENDING, Status.BLOCKED, call(), note=hold.reason)
    ext.after_change(Applied((change,)))
    assert f.woken == ["b", "b"]
    f.publish(ext, [("c", call())])
    parked = f.claim(ext, claim("c", call()))["c"]  # b holds the permit now
    c_blocked = AppliedChange(
        "c", "charge", Status.PENDING, Status.BLOCKED, call(), note=parked.reason
    )
    ext.after_change(Applied((c_blocked,)))
    assert f.woken == ["b", "b"]  # parked without a permit: left waiting
