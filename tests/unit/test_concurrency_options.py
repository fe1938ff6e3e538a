"""Concurrency options (fleet.concurrency._options) and the key of a call (_key)."""

from __future__ import annotations

import inspect

import pytest

from fleet.codec import encode_call, get_codec
from fleet.concurrency import Limit, Mode, Policy, RateLimit, concurrency_key, policy_of
from fleet.errors import ConfigError

CODEC = get_codec("msgpack")


def charge(order: str, amount: int = 1, note: str = "") -> None:
    """A task function whose signature the keys bind to."""


SIG = inspect.signature(charge)


def call(*args: object, **kwargs: object) -> bytes:
    return encode_call(CODEC, "shop.charge", args, kwargs)


def key(mode: Mode, data: bytes, names: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> str:
    return concurrency_key("shop.charge", data, CODEC, mode, names, SIG, exclude)


def test_rate_limits_parse() -> None:
    assert RateLimit.parse("100/m") == RateLimit(100, 60.0)
    assert RateLimit.parse(" 5 / 10s ") == RateLimit(5, 10.0)
    assert RateLimit.parse("1/d") == RateLimit(1, 86400.0)
    assert RateLimit.parse(RateLimit(3, 1.0)) == RateLimit(3, 1.0)
    for bad in ("100", "0/s", "x/m", "10/w", "-1/s", 5):
        with pytest.raises(ConfigError, match=r"rate_limit|count"):
            RateLimit.parse(bad)  # type: ignore[arg-type]


def test_a_full_policy_parses() -> None:
    policy = policy_of(
        {
            "registration_concurrency": "keys",
            "running_concurrency": Limit(Mode.KEYS, limit=3),
            "key_arguments": ("order",),
            "on_diff_non_key_args": "raise",
            "call_result_cache": True,
            "cache_ttl": 60,
            "disable_cache_args": ("note",),
            "rate_limit": "100/m",
            "rate_limit_key": "order",
        },
        SIG,
    )
    assert policy == Policy(
        registration=Limit(Mode.KEYS),
        running=Limit(Mode.KEYS, 3),
        key_arguments=("order",),
        on_diff_non_key_args="raise",
        cache=True,
        cache_ttl=60.0,
        disable_cache_args=("note",),
        rate=RateLimit(100, 60.0),
        rate_key=("order",),
    )
    assert policy.at_publish and policy.at_claim
    assert not policy_of({}).at_publish and not policy_of({}).at_claim


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"registration_concurrency": "sometimes"}, "registration_concurrency.*'sometimes'"),
        ({"registration_concurrency": Limit(Mode.TASK, 2)}, "limit must be 1"),
        ({"running_concurrency": "keys"}, "KEYS needs key_arguments"),
        ({"running_concurrency": "task", "key_arguments": ("order",)}, "no concurrency mode"),
        ({"running_concurrency": "keys", "key_arguments": ("nope",)}, r"\['nope'\]"),
        ({"running_concurrency": "keys", "key_arguments": [1]}, "tuple of argument names"),
        ({"on_diff_non_key_args": "ignore"}, "'ignore'"),
        ({"call_result_cache": "yes"}, "call_result_cache.*'yes'"),
        ({"cache_ttl": 0}, "cache_ttl.*0"),
        ({"rate_limit_key": ("order",)}, "without a rate_limit"),
        ({"idempotency_ttl": float("inf")}, "idempotency_ttl"),
        ({"concurrency": 1}, "unknown concurrency option"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        policy_of(options, SIG)


def test_limit_checks_its_values() -> None:
    assert Limit("arguments").mode is Mode.ARGUMENTS
    with pytest.raises(ConfigError, match="limit must be an int >= 1, got 0"):
        Limit(Mode.TASK, 0)


def test_task_mode_has_one_key_per_task() -> None:
    assert key(Mode.TASK, call("a")) == key(Mode.TASK, call("b", 2)) == "shop.charge:*"


def test_arguments_mode_binds_to_the_signature() -> None:
    same = {key(Mode.ARGUMENTS, d) for d in (call("a"), call(order="a"), call("a", 1, ""))}
    assert len(same) == 1
    assert key(Mode.ARGUMENTS, call("a", 2)) not in same
    no_note = key(Mode.ARGUMENTS, call("a"), exclude=("note",))
    assert key(Mode.ARGUMENTS, call("a", note="x"), exclude=("note",)) == no_note


def test_keys_mode_looks_only_at_the_key_arguments() -> None:
    k = key(Mode.KEYS, call("a", 1), ("order",))
    assert key(Mode.KEYS, call(order="a", amount=5, note="n"), ("order",)) == k
    assert key(Mode.KEYS, call("b", 1), ("order",)) != k
    assert key(Mode.KEYS, call("a", 1), ("order", "amount")) != k


def test_without_a_signature_calls_are_keyed_as_sent() -> None:
    def no_sig(data: bytes) -> str:
        return concurrency_key("t", data, CODEC, Mode.ARGUMENTS)

    assert no_sig(call("a")) == no_sig(call("a")) != no_sig(call(order="a"))
    with pytest.raises(ValueError, match="DISABLED"):
        concurrency_key("t", call(), CODEC, Mode.DISABLED)


def test_the_public_surface_is_pinned_and_imports_no_pymongo() -> None:
    import subprocess
    import sys

    import fleet.concurrency

    assert fleet.concurrency.__all__ == [
        "OPTIONS",
        "ConcurrencyExtension",
        "Grant",
        "Held",
        "Limit",
        "LimitStore",
        "Memo",
        "Mode",
        "Permits",
        "Policy",
        "RateLimit",
        "concurrency_key",
        "drop",
        "held_by_task",
        "limit_store",
        "policy_of",
    ]
    assert all(hasattr(fleet.concurrency, name) for name in fleet.concurrency.__all__)
    code = "import sys, fleet.concurrency; assert 'pymongo' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
