"""Unit tests of fleet._exceptions: errors captured on a worker and rebuilt by the caller."""

from __future__ import annotations

import threading

import pytest

from fleet import errors
from fleet._exceptions import error_info, exception_type_matches, import_exception_type, rebuild
from fleet.codec import get_codec
from fleet.errors import RemoteError
from fleet.state import ErrorInfo

NOTE_HEAD = "Remote traceback (most recent call last) from fleet worker:\n"


class PaymentDeclined(Exception):
    def __init__(self, order_id: int, reason: str) -> None:
        super().__init__(order_id, reason)
        self.order_id = order_id
        self.reason = reason

    def __str__(self) -> str:
        return f"order {self.order_id} declined: {self.reason}"


class NeedsKeywords(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"failed with code {code}")
        self.code = code


class Unbuildable(Exception):
    def __new__(cls, *args: object, **kwargs: object) -> Unbuildable:
        raise RuntimeError("no")


class NoStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str is broken")


def raised(exc: BaseException) -> BaseException:
    """`exc` after being raised and caught, so that it has a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def charge_card() -> None:
    raise ValueError("card number is invalid", 42)


def test_value_error_round_trip_with_traceback_note() -> None:
    try:
        charge_card()
    except ValueError as exc:
        info = error_info(exc)
    assert info.type == "builtins.ValueError"
    assert info.message == "('card number is invalid', 42)"
    assert info.traceback.startswith("Traceback (most recent call last):\n")
    assert "in charge_card" in info.traceback
    assert info.traceback.endswith("ValueError: ('card number is invalid', 42)\n")
    assert info.args == get_codec("msgpack").encode(["card number is invalid", 42])

    got = rebuild(info)
    assert type(got) is ValueError
    assert got.args == ("card number is invalid", 42)
    assert got.remote_traceback == info.traceback  # type: ignore[attr-defined]
    assert got.__notes__ == [
        NOTE_HEAD + info.traceback.removeprefix("Traceback (most recent call last):\n").rstrip()
    ]
    assert "in charge_card" in got.__notes__[0]


def test_custom_exception_with_two_argument_constructor() -> None:
    got = rebuild(error_info(raised(PaymentDeclined(17, "insufficient funds"))))
    assert type(got) is PaymentDeclined
    assert (got.order_id, got.reason) == (17, "insufficient funds")
    assert str(got) == "order 17 declined: insufficient funds"


def test_keyword_only_constructor_falls_back_without_init() -> None:
    info = error_info(raised(NeedsKeywords(code=7)))
    assert info.type == f"{__name__}.NeedsKeywords"
    got = rebuild(info)
    assert type(got) is NeedsKeywords
    assert str(got) == "failed with code 7"
    assert got.args == ("failed with code 7",)
    assert not hasattr(got, "code")  # __init__ could not run: documented
    assert got.__notes__[0].startswith(NOTE_HEAD)


def test_unencodable_args_rebuild_from_message() -> None:
    info = error_info(raised(KeyError(threading.Lock())))
    assert info.args is None
    got = rebuild(info)
    assert type(got) is KeyError
    assert got.args == (info.message,)


def test_malformed_args_rebuild_from_message() -> None:
    info = ErrorInfo("builtins.ValueError", "boom", "tb\n", args=b"\xc1")
    got = rebuild(info)
    assert type(got) is ValueError
    assert got.args == ("boom",)


@pytest.mark.parametrize(
    "exc",
    [
        errors.WaitCycleError("a waits on b waits on a"),
        errors.CancelledError("cancelled by user"),
        errors.SoftTimeLimitExceeded("ran past 5s"),
        errors.HardTimeLimitExceeded("killed after 10s"),
        errors.WorkerLostError("worker w1 died"),
        errors.SerializationError("cannot encode"),
        errors.ConfigError("bad"),
        errors.UnknownTaskError("no such task"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        FileNotFoundError(2, "No such file or directory"),
        StopIteration(5),
        ArithmeticError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_known_exceptions_round_trip(exc: BaseException) -> None:
    info = error_info(raised(exc))
    got = rebuild(info)
    assert type(got) is type(exc)
    assert got.args == exc.args
    assert str(got) == str(exc)
    assert got.remote_traceback == info.traceback  # type: ignore[attr-defined]


def test_remote_error_keeps_original_type_name_when_re_raised() -> None:
    original = RemoteError("elsewhere.Boom", "it broke", "Traceback ...\n")
    got = rebuild(error_info(raised(original)))
    assert type(got) is RemoteError
    assert isinstance(got, RemoteError)
    assert got.type_name == "elsewhere.Boom"
    assert str(got) == "elsewhere.Boom: it broke"


@pytest.mark.parametrize(
    "type_name",
    [
        "no_such_package_xyz.Boom",
        f"{__name__}.NotThere",
        "builtins.dict",  # a class, not an exception
        "os.system",  # not a class: must never be called
        "builtins",
        f"{__name__}.Unbuildable",  # cannot be constructed at all
        "builtins.SystemExit",  # BaseException only: would stop the caller
        "builtins.KeyboardInterrupt",
    ],
)
def test_unrebuildable_types_become_remote_error(type_name: str) -> None:
    info = ErrorInfo(type_name, "it broke", "Traceback (most recent call last):\n  X\n")
    got = rebuild(info)
    assert type(got) is RemoteError
    assert isinstance(got, RemoteError)
    assert got.type_name == type_name
    assert str(got) == f"{type_name}: it broke"
    assert got.remote_traceback == info.traceback
    assert got.__notes__ == [NOTE_HEAD + "  X"]


def test_locally_defined_exception_becomes_remote_error() -> None:
    class Local(Exception):
        pass

    info = error_info(raised(Local("x")))
    assert (
        info.type
        == f"{__name__}.test_locally_defined_exception_becomes_remote_error.<locals>.Local"
    )
    got = rebuild(info)
    assert isinstance(got, RemoteError)
    assert got.type_name == info.type


def test_no_traceback_no_note() -> None:
    got = rebuild(ErrorInfo("builtins.ValueError", "x"))
    assert type(got) is ValueError
    assert not hasattr(got, "__notes__")


def test_error_info_survives_unprintable_exception() -> None:
    info = error_info(raised(NoStr("a")))
    assert info.type == f"{__name__}.NoStr"
    assert info.message == f"<unprintable {__name__}.NoStr object>"
    assert type(rebuild(info)) is NoStr


def test_chained_exception_traceback_text() -> None:
    try:
        try:
            raise KeyError("k")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        info = error_info(exc)
    assert "KeyError: 'k'" in info.traceback
    assert "The above exception was the direct cause" in info.traceback
    assert type(rebuild(info)) is RuntimeError


@pytest.mark.parametrize(
    ("type_name", "types", "expected"),
    [
        ("builtins.ValueError", (ValueError,), True),
        ("builtins.ValueError", (Exception,), True),
        ("builtins.ValueError", (KeyError, TypeError), False),
        ("builtins.UnicodeDecodeError", (ValueError,), True),
        ("builtins.KeyError", (LookupError,), True),
        ("fleet.errors.SoftTimeLimitExceeded", (errors.TaskError,), True),
        ("fleet.errors.SoftTimeLimitExceeded", (errors.StateError,), False),
        (f"{__name__}.PaymentDeclined", (PaymentDeclined,), True),
        ("no_such_package_xyz.Boom", (Exception,), False),
        ("no_such_package_xyz.Boom", (BaseException,), True),
        (f"{__name__}.f.<locals>.Local", (ValueError,), False),
    ],
)
def test_exception_type_matches(
    type_name: str, types: tuple[type[BaseException], ...], expected: bool
) -> None:
    assert exception_type_matches(ErrorInfo(type_name, "m"), types) is expected


def test_exception_type_matches_by_name_when_unimportable() -> None:
    class Local(Exception):
        pass

    info = error_info(Local("x"))
    assert exception_type_matches(info, (Local,)) is True
    assert exception_type_matches(info, (ValueError,)) is False


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("builtins.ValueError", ValueError),
        ("ValueError", ValueError),
        ("fleet.errors.WaitCycleError", errors.WaitCycleError),
        (f"{__name__}.PaymentDeclined", PaymentDeclined),
        ("json.JSONDecodeError", __import__("json").JSONDecodeError),
    ],
)
def test_import_exception_type(name: str, expected: type[BaseException]) -> None:
    assert import_exception_type(name) is expected


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("", ValueError, "is not a dotted name"),
        ("builtins..ValueError", ValueError, "is not a dotted name"),
        ("no_such_package_xyz.Boom", ImportError, "no module of that name"),
        ("builtins.NoSuchError", ImportError, "cannot import 'builtins.NoSuchError'"),
        ("builtins.dict", TypeError, "not an exception class"),
        ("os.system", TypeError, "not an exception class"),
    ],
)
def test_import_exception_type_errors(name: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        import_exception_type(name)
