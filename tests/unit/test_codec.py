"""Unit tests of fleet.codec: exact round trips, lossy conversions, errors, the pickle gate."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import json
import math
import socket
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgpack
import pytest

from fleet.codec import (
    CODECS,
    ArgumentEncodingError,
    Codec,
    JsonCodec,
    MsgpackCodec,
    PickleCodec,
    call_key,
    decode_call,
    encode_call,
    get_codec,
)
from fleet.errors import ConfigError, SerializationError

# -- module-level types (importable by path, as the codec requires) ---------------------


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class Perm(enum.Flag):
    R = 1
    W = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: int
    y: int


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    tags: list[str] = dataclasses.field(default_factory=list)
    origin: FrozenPoint = FrozenPoint(0, 0)


@dataclasses.dataclass(slots=True)
class Counted:
    items: tuple[int, ...]
    total: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.total = sum(self.items)


@dataclasses.dataclass(frozen=True)
class WithInitVar:
    value: int
    scale: dataclasses.InitVar[int]
    scaled: int = dataclasses.field(init=False)

    def __post_init__(self, scale: int) -> None:
        object.__setattr__(self, "scaled", self.value * scale)


class Pair(NamedTuple):
    left: object
    right: object


class Plain:
    """An ordinary class: not encodable by msgpack or JSON (pickle is fine)."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and other.v == self.v

    __hash__ = None  # type: ignore[assignment]


class MyStr(str):
    def __str__(self) -> str:
        return "not the value"


class MyDateTime(dt.datetime):
    pass


class MyInt(int):
    pass


class MyTuple(tuple[int, ...]):
    pass


class OddZone(dt.tzinfo):
    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, d: dt.datetime | None) -> str:
        return "ODD"


# -- helpers ----------------------------------------------------------------------------


def assert_same(got: object, want: object) -> None:
    """Equal values with exactly equal types, all the way down."""
    assert type(got) is type(want), f"{got!r} is {type(got)}, want {type(want)}"
    if isinstance(want, float):
        assert isinstance(got, float)
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want
            assert math.copysign(1, got) == math.copysign(1, want)
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, dict):
        assert isinstance(got, dict)
        assert list(got) == list(want)
        for (gk, gv), (wk, wv) in zip(got.items(), want.items(), strict=True):
            assert_same(gk, wk)
            assert_same(gv, wv)
    elif isinstance(want, set | frozenset):
        assert got == want
        assert isinstance(got, set | frozenset)
        assert sorted(map(repr, got)) == sorted(map(repr, want))
    elif isinstance(want, dt.datetime | dt.time):
        assert isinstance(got, dt.datetime | dt.time)
        assert got.replace(tzinfo=None) == want.replace(tzinfo=None)
        assert got.fold == want.fold
        assert type(got.tzinfo) is type(want.tzinfo)
        assert got.tzinfo == want.tzinfo
        assert got.tzname() == want.tzname()
        assert got.utcoffset() == want.utcoffset()
    elif dataclasses.is_dataclass(want):
        for f in dataclasses.fields(want):
            assert_same(getattr(got, f.name), getattr(want, f.name))
    else:
        assert got == want


@pytest.fixture(params=["msgpack", "json"])
def codec(request: pytest.FixtureRequest) -> Codec:
    return get_codec(request.param)


def roundtrip(codec: Codec, value: object) -> object:
    data = codec.encode(value)
    assert type(data) is bytes
    return codec.decode(data)


MADRID = ZoneInfo("Europe/Madrid")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

EXACT: list[tuple[str, object]] = [
    ("str-empty", ""),
    ("str", "héllo ✓ \x00"),
    ("bytes", b"\x00\xff"),
    ("bytes-empty", b""),
    ("int-zero", 0),
    ("int-neg", -1),
    ("int-max-u64", 2**64 - 1),
    ("int-min-i64", -(2**63)),
    ("int-2**64", 2**64),
    ("int-below-i64", -(2**63) - 1),
    ("int-big", 2**200),
    ("int-big-neg", -(2**200)),
    ("int-huge", 7**5000),
    ("float", 1.5),
    ("float-neg-zero", -0.0),
    ("float-inf", math.inf),
    ("float-neg-inf", -math.inf),
    ("float-nan", math.nan),
    ("true", True),
    ("false", False),
    ("none", None),
    ("list", [1, "a", None]),
    ("tuple-empty", ()),
    ("tuple", (1, "a")),
    ("tuple-nested", (1, (2, (3,)), [(4,)])),
    ("list-of-tuples", [(1, 2), [(3,)]]),
    ("dict", {"a": 1, "b": [2]}),
    ("dict-empty", {}),
    ("dict-int-keys", {1: "a", 2: "b"}),
    ("dict-mixed-keys", {1: "a", "1": "b", None: 0, 2.5: 1, b"k": 2, (1, (2,)): [3]}),
    ("dict-bool-key", {True: "t"}),
    ("dict-frozenset-key", {frozenset({1, 2}): 1}),
    ("dict-tag-collision", {"__fleet__": "tuple", "v": [1]}),
    ("set-empty", set()),
    ("set", {1, 2, 3}),
    ("set-of-tuples", {(1, 2), (3,)}),
    ("set-mixed", {1, "a", (2,)}),
    ("frozenset", frozenset({"a", "b"})),
    ("datetime-naive", dt.datetime(2024, 2, 29, 23, 59, 58, 999999)),
    ("datetime-utc", dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)),
    ("datetime-offset", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=IST)),
    (
        "datetime-offset-named",
        dt.datetime(2024, 1, 2, tzinfo=dt.timezone(-dt.timedelta(hours=3, seconds=1), "X")),
    ),
    ("datetime-madrid", dt.datetime(2024, 7, 1, 12, 0, tzinfo=MADRID)),
    ("datetime-madrid-fold", dt.datetime(2024, 10, 27, 2, 30, tzinfo=MADRID, fold=1)),
    ("datetime-zoneinfo-utc", dt.datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC"))),
    ("date", dt.date(1999, 12, 31)),
    ("time", dt.time(1, 2, 3, 4)),
    ("time-tz", dt.time(1, 2, tzinfo=IST)),
    ("timedelta", dt.timedelta(days=-3, seconds=5, microseconds=7)),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("decimal", Decimal("1.10")),
    ("decimal-neg-zero", Decimal("-0.000")),
    ("decimal-exp", Decimal("1E+30")),
    ("enum", Color.RED),
    ("enum-tuple-value", Color.PAIR),
    ("intenum", Priority.HIGH),
    ("strenum", Mode.FAST),
    ("flag-combined", Perm.R | Perm.W),
    ("dataclass", Point(1, 2)),
    ("dataclass-frozen", FrozenPoint(3, 4)),
    ("dataclass-nested", Shape("tri", [Point(0, 0), Point(1, 1)], ["a"])),
    ("dataclass-default-factory", Shape("empty", [])),
    ("dataclass-slots-init-false", Counted((1, 2, 3))),
    ("dataclass-initvar", WithInitVar(2, 10)),
    ("namedtuple", Pair(1, (2, Color.RED))),
    (
        "nested",
        {
            (FrozenPoint(1, 2), Priority.LOW): [
                {"when": dt.datetime(2020, 1, 1, tzinfo=MADRID), "ids": {uuid.UUID(int=1)}},
                (Decimal("2.5"), frozenset({(1, "x")}), b"\x01"),
            ],
            2**100: {"deep": [[[(None, True, -0.0)]]]},
        },
    ),
]


@pytest.mark.parametrize(("value"), [v for _, v in EXACT], ids=[i for i, _ in EXACT])
def test_round_trip_keeps_types_and_values(codec: Codec, value: object) -> None:
    assert_same(roundtrip(codec, value), value)


def test_enum_and_zoneinfo_identity(codec: Codec) -> None:
    got = roundtrip(codec, [Color.RED, dt.datetime(2024, 1, 1, tzinfo=MADRID)])
    assert isinstance(got, list)
    assert got[0] is Color.RED
    assert got[1].tzinfo is MADRID
    assert roundtrip(codec, dt.datetime(2024, 1, 1, tzinfo=dt.UTC)).tzinfo is dt.UTC  # type: ignore[attr-defined]


def test_datetime_madrid_keeps_offset(codec: Codec) -> None:
    winter = roundtrip(codec, dt.datetime(2024, 1, 15, 9, 0, tzinfo=MADRID))
    summer = roundtrip(codec, dt.datetime(2024, 7, 15, 9, 0, tzinfo=MADRID))
    assert isinstance(winter, dt.datetime)
    assert isinstance(summer, dt.datetime)
    assert winter.utcoffset() == dt.timedelta(hours=1)
    assert summer.utcoffset() == dt.timedelta(hours=2)
    assert summer.tzname() == "CEST"


def test_decimal_nan_round_trips(codec: Codec) -> None:
    got = roundtrip(codec, Decimal("NaN"))
    assert isinstance(got, Decimal)
    assert got.is_nan()


def test_dataclass_init_false_field_keeps_encoded_value(codec: Codec) -> None:
    value = Counted((1, 2))
    value.total = 99  # state that differs from what __post_init__ would compute
    got = roundtrip(codec, value)
    assert isinstance(got, Counted)
    assert got.items == (1, 2)
    assert got.total == 99


def test_frozen_dataclass_stays_frozen(codec: Codec) -> None:
    got = roundtrip(codec, FrozenPoint(1, 2))
    assert isinstance(got, FrozenPoint)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.x = 5  # type: ignore[misc]
    assert hash(got) == hash(FrozenPoint(1, 2))


LOSSY: list[tuple[str, object, object]] = [
    ("bytearray", bytearray(b"ab"), b"ab"),
    ("memoryview", memoryview(b"ab"), b"ab"),
    ("ordereddict", collections.OrderedDict([("b", 1), ("a", 2)]), {"b": 1, "a": 2}),
    ("defaultdict", collections.defaultdict(list, {1: [2]}), {1: [2]}),
    ("str-subclass", MyStr("s"), "s"),
    ("int-subclass", MyInt(5), 5),
    ("int-subclass-big", MyInt(2**70), 2**70),
    ("tuple-subclass", MyTuple((1, 2)), (1, 2)),
    ("nested-subclass", [MyTuple((MyInt(1),))], [(1,)]),
    (
        "datetime-subclass",
        MyDateTime(2024, 10, 27, 2, 30, tzinfo=MADRID, fold=1),
        dt.datetime(2024, 10, 27, 2, 30, tzinfo=MADRID, fold=1),
    ),
]


@pytest.mark.parametrize(
    ("value", "want"), [(v, w) for _, v, w in LOSSY], ids=[i for i, _, _ in LOSSY]
)
def test_documented_lossy_conversions(codec: Codec, value: object, want: object) -> None:
    assert_same(roundtrip(codec, value), want)


def _generator() -> Iterator[int]:
    yield 1


UNENCODABLE: list[tuple[str, Any, str]] = [
    ("lambda", lambda: 1, "'function'"),
    ("generator", _generator(), "'generator'"),
    ("lock", threading.Lock(), "'_thread.lock'"),
    ("object", object(), "'object'"),
    ("plain-class-instance", Plain(1), f"'{__name__}.Plain'"),
    ("class-object", Point, "classes cannot be encoded"),
    ("nested-in-list", [1, [Plain(1)]], f"'{__name__}.Plain'"),
    ("nested-in-dict-value", {"a": (1, {2: threading.Lock()})}, "'_thread.lock'"),
    ("in-dataclass", Point(Plain(1), 2), f"'{__name__}.Plain'"),  # type: ignore[arg-type]
    ("odd-tzinfo", dt.datetime(2024, 1, 1, tzinfo=OddZone()), f"'{__name__}.OddZone'"),
]


@pytest.mark.parametrize(
    ("value", "named"), [(v, n) for _, v, n in UNENCODABLE], ids=[i for i, _, _ in UNENCODABLE]
)
def test_unencodable_values_raise_naming_the_type(codec: Codec, value: object, named: str) -> None:
    with pytest.raises(SerializationError) as info:
        codec.encode(value)
    assert f"the {codec.name} codec cannot encode" in str(info.value)
    assert named in str(info.value)
    assert info.value.__cause__ is not None


def test_unencodable_file_and_socket(codec: Codec, tmp_path: Path) -> None:
    with (tmp_path / "f").open("w") as fh, socket.socket() as sock:
        for value, name in [(fh, "'_io.TextIOWrapper'"), (sock, "'socket.socket'")]:
            with pytest.raises(SerializationError, match=name):
                codec.encode({"x": [value]})


def test_class_defined_in_a_function_is_refused_when_encoding(codec: Codec) -> None:
    @dataclasses.dataclass
    class Inner:
        x: int

    with pytest.raises(SerializationError, match=r"cannot be imported by that name"):
        codec.encode(Inner(1))


def test_bad_input_raises_serialization_error(codec: Codec) -> None:
    garbage = b"\xc1" if codec.name == "msgpack" else b"{"
    with pytest.raises(SerializationError, match=f"the {codec.name} codec cannot decode"):
        codec.decode(garbage)


def _craft(codec: Codec, tag: str, payload: object) -> bytes:
    """Data as `codec` writes a value tagged `tag`, with an arbitrary payload."""
    if codec.name == "json":
        return json.dumps({"__fleet__": tag, "v": payload}).encode()
    samples = {"enum": Color.RED, "dataclass": Point(1, 2), "namedtuple": Pair(1, 2)}
    code = msgpack.unpackb(codec.encode(samples[tag]), ext_hook=lambda c, d: c)
    packed: bytes = msgpack.packb(msgpack.ExtType(code, msgpack.packb(payload)))
    return packed


@pytest.mark.parametrize(
    ("tag", "payload", "message"),
    [
        ("enum", ["no_such_module_xyz:Color", 1], "cannot import class 'no_such_module_xyz:Color'"),
        ("enum", [f"{__name__}:Nope", 1], f"cannot import class '{__name__}:Nope'"),
        ("enum", ["os:system", "echo pwned"], "'os:system' is not an enum class"),
        ("enum", ["builtins:int", 5], "'builtins:int' is not an enum class"),
        ("dataclass", ["builtins:dict", {}], "'builtins:dict' is not a dataclass class"),
        ("dataclass", [f"{__name__}:Point", {"x": 1, "q": 2}], "has no fields ['q']"),
        ("dataclass", [f"{__name__}:Point", {"x": 1}], "cannot rebuild dataclass"),
        ("namedtuple", ["builtins:tuple", [1]], "'builtins:tuple' is not a named tuple class"),
    ],
)
def test_decoding_refuses_unknown_or_unsafe_classes(
    codec: Codec, tag: str, payload: object, message: str
) -> None:
    with pytest.raises(SerializationError) as info:
        codec.decode(_craft(codec, tag, payload))
    assert message in str(info.value)


def test_unknown_msgpack_extension_and_json_tag() -> None:
    with pytest.raises(SerializationError, match="unknown msgpack extension type 99"):
        get_codec("msgpack").decode(msgpack.packb(msgpack.ExtType(99, b"")))
    with pytest.raises(SerializationError, match="unknown tag 'nope'"):
        get_codec("json").decode(b'{"__fleet__":"nope","v":1}')


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ([[1], {}], b"[[1],{}]"),
        ((1,), b'{"__fleet__":"tuple","v":[1]}'),
        ({"b", "a", "c"}, b'{"__fleet__":"set","v":["a","b","c"]}'),
        (math.nan, b'{"__fleet__":"float","v":"nan"}'),
        (2**64, b'{"__fleet__":"int","v":"0x10000000000000000"}'),
        (b"\x00", b'{"__fleet__":"bytes","v":"AA=="}'),
        ({1: "a"}, b'{"__fleet__":"dict","v":[[1,"a"]]}'),
        ("é", '"é"'.encode()),
    ],
)
def test_json_wire_format(value: object, encoded: bytes) -> None:
    assert get_codec("json").encode(value) == encoded


def test_sets_encode_sorted_for_stable_call_keys(codec: Codec) -> None:
    a = {f"k{i}" for i in range(50)}
    b = set(sorted(a, reverse=True))
    assert codec.encode(a) == codec.encode(b)
    assert codec.encode(frozenset(a)) == codec.encode(frozenset(b))


def test_msgpack_wire_format_of_plain_values() -> None:
    assert get_codec("msgpack").encode([[1], {}]) == b"\x92\x91\x01\x80"
    assert get_codec("msgpack").encode({"a": b"b"}) == b"\x81\xa1a\xc4\x01b"


# -- get_codec --------------------------------------------------------------------------


def test_get_codec_returns_cached_instances() -> None:
    assert isinstance(get_codec("msgpack"), MsgpackCodec)
    assert isinstance(get_codec("json"), JsonCodec)
    assert get_codec("msgpack") is get_codec("msgpack")
    assert get_codec("msgpack").name == "msgpack"
    assert get_codec("json").name == "json"
    assert set(CODECS) == {"msgpack", "json", "pickle"}


@pytest.mark.parametrize("name", ["yaml", "", "MSGPACK"])
def test_get_codec_unknown_name(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_codec(name)
    assert str(info.value) == f"unknown codec {name!r}; known codecs: json, msgpack, pickle"


def test_pickle_needs_explicit_opt_in() -> None:
    with pytest.raises(ConfigError) as info:
        get_codec("pickle")
    assert "allow_pickle = true" in str(info.value)
    assert "arbitrary code" in str(info.value)
    codec = get_codec("pickle", allow_pickle=True)
    assert isinstance(codec, PickleCodec)
    assert codec.name == "pickle"
    assert codec is get_codec("pickle", allow_pickle=True)
    assert codec.decode(codec.encode([Plain(3), (1,)])) == [Plain(3), (1,)]


def test_pickle_errors_are_serialization_errors() -> None:
    codec = get_codec("pickle", allow_pickle=True)
    with pytest.raises(SerializationError, match="the pickle codec cannot encode"):
        codec.encode(threading.Lock())
    with pytest.raises(SerializationError, match="the pickle codec cannot decode"):
        codec.decode(b"not a pickle")


# -- encode_call / decode_call / call_key ----------------------------------------------


def test_call_round_trip(codec: Codec) -> None:
    data = encode_call(codec, "t", (1, (2,), Point(1, 2)), {"when": dt.date(2024, 1, 1)})
    args, kwargs = decode_call(codec, data)
    assert_same(args, (1, (2,), Point(1, 2)))
    assert_same(kwargs, {"when": dt.date(2024, 1, 1)})


def test_unencodable_argument_names_parameter_and_type() -> None:
    with socket.socket() as conn, pytest.raises(ArgumentEncodingError) as info:
        encode_call(get_codec("msgpack"), "shop.report", (7, conn), {}, ("order", "conn"))
    err = info.value
    assert str(err) == (
        "task 'shop.report' argument 'conn' has type 'socket.socket', which the msgpack "
        "codec cannot encode; pass something serializable instead, such as an id to look "
        "the object up"
    )
    assert (err.task, err.argument, err.type_name) == ("shop.report", "conn", "socket.socket")
    assert isinstance(err, SerializationError)
    assert isinstance(err.__cause__, SerializationError)


def test_unencodable_positional_without_params(codec: Codec) -> None:
    with pytest.raises(ArgumentEncodingError) as info:
        encode_call(codec, "t", (1, lambda: 2), {})
    assert info.value.argument == "positional argument 1"
    assert info.value.type_name == "function"
    assert str(info.value).startswith("task 't' positional argument 1 has type 'function'")


def test_unencodable_keyword_argument_nested(codec: Codec) -> None:
    with pytest.raises(ArgumentEncodingError) as info:
        encode_call(codec, "t", (1,), {"ok": 2, "rows": [1, threading.Lock()]}, ("a",))
    assert info.value.argument == "rows"
    assert info.value.type_name == "_thread.lock"
    assert (
        f"task 't' argument 'rows' (type 'list') contains a value of type '_thread.lock', "
        f"which the {codec.name} codec cannot encode"
    ) in str(info.value)


def test_unimportable_class_argument_explains_why(codec: Codec) -> None:
    @dataclasses.dataclass
    class Inner:
        x: int

    with pytest.raises(ArgumentEncodingError) as info:
        encode_call(codec, "t", (Inner(1),), {}, ("item",))
    assert info.value.argument == "item"
    assert "cannot be imported by that name (defined in a function?)" in str(info.value)


@pytest.mark.parametrize("value", [5, [1, 2, 3], [[1], {1: 2}], [[1], []], {"a": 1}])
def test_decode_call_rejects_other_shapes(codec: Codec, value: object) -> None:
    with pytest.raises(SerializationError, match="is not an encoded call"):
        decode_call(codec, codec.encode(value))


def test_call_key_is_stable_and_discriminating() -> None:
    data = encode_call(get_codec("msgpack"), "shop.report", (1,), {})
    assert data == b"\x92\x91\x01\x80"
    assert call_key("shop.report", data) == "18991035180f1e25e371a70fba216aad"
    assert call_key("shop.report", data) != call_key("shop.reports", data)
    assert call_key("a", b"bc") != call_key("ab", b"c")
    assert call_key("shop.report", data) != call_key("shop.report", data + b"\x00")
