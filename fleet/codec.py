"""Codecs: how task arguments and results become bytes and back.

Job: turn Python values into bytes for the broker and the state store, and back, with
clear errors naming the value that cannot make the trip.

Contract:
- `MsgpackCodec` (the default) and `JsonCodec` round-trip, with type and value kept:
  None, bool, int of any size, float (nan and inf too), str, bytes, list, tuple, dict (any
  hashable supported keys), set, frozenset, `datetime.datetime` (naive, or aware with a
  `datetime.timezone` or a `zoneinfo.ZoneInfo` zone, kept exactly), `date`, `time`,
  `timedelta`, `uuid.UUID`, `decimal.Decimal`, `enum.Enum` members (IntEnum, StrEnum and
  Flag included), named tuples and dataclass instances (frozen ones too), nested in any
  way. Enums, named tuples and dataclasses travel as an importable `module:QualName`
  path plus their value or fields; the class must be importable by that path in the
  decoding process (a class defined inside a function is refused when encoding).
- Lossy on purpose, and documented: bytearray and memoryview come back as bytes; other
  subclasses of dict, list, tuple, set, frozenset, str, bytes, int and float (e.g.
  OrderedDict, defaultdict) come back as their builtin base type.
- Anything else (functions, lambdas, generators, classes, open files, sockets, locks,
  instances of ordinary classes) raises `SerializationError` naming the type; nothing is
  converted silently. `encode_call` also names the task argument that holds it.
- Sets are encoded sorted when their items can be ordered, so equal calls get equal
  `call_key`s across processes.
- `PickleCodec` is only handed out by `get_codec` when `allow_pickle` is set: decoding
  pickle data can run arbitrary code.
- Decoding imports classes only by module name plus attribute lookup, and only accepts
  enum, dataclass and named tuple classes; it never calls any other object named in data.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import importlib
import json
import math
import pickle
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgpack

from fleet.errors import ConfigError, SerializationError

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
"""The range msgpack encodes natively; other ints travel as a tagged big integer."""
_TAG = "__fleet__"


class ArgumentEncodingError(SerializationError):
    """A task argument cannot be encoded by the configured codec.

    Attributes:
        task: the task name.
        argument: the parameter name, or "positional argument i" when unknown.
        type_name: the type of the value that cannot be encoded (possibly nested inside
            the argument).
    """

    def __init__(self, message: str, *, task: str, argument: str, type_name: str) -> None:
        super().__init__(message)
        self.task = task
        self.argument = argument
        self.type_name = type_name


class _Undecodable(ValueError):
    """Raised inside the decoding hooks; turned into SerializationError by the codec."""


class _Unencodable(TypeError):
    """Raised inside the type hooks; turned into SerializationError by the codec."""

    def __init__(self, value_type: type, reason: str = "") -> None:
        super().__init__(reason or f"unsupported type {_type_name(value_type)!r}")
        self.type_name = _type_name(value_type)
        self.reason = reason


def _type_name(cls: type) -> str:
    """A readable dotted name of `cls`: 'socket.socket', and bare for builtins."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# -- classes by path ------------------------------------------------------------------

_PATHS: dict[type, str] = {}
_CLASSES: dict[str, type] = {}


def _class_path(cls: type) -> str:
    path = _PATHS.get(cls)
    if path is None:
        path = f"{cls.__module__}:{cls.__qualname__}"
        try:
            found = _import_class(path)
        except _Undecodable:
            found = None
        if found is not cls:
            why = f"class {path!r} cannot be imported by that name (defined in a function?)"
            raise _Unencodable(cls, why)
        _PATHS[cls] = path
    return path


def _import_class(path: str) -> object:
    module_name, _, qualname = path.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise _Undecodable(f"cannot import class {path!r}: {exc}") from exc
    return obj


def _load_class(path: str, kind: str, check: Callable[[type], bool]) -> type:
    cls = _CLASSES.get(path)
    if cls is None:
        obj = _import_class(path)
        if not (isinstance(obj, type) and check(obj)):
            raise _Undecodable(f"{path!r} is not {kind} class; refusing to decode it")
        cls = _CLASSES[path] = obj
    return cls


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


# -- the value model shared by msgpack and JSON ----------------------------------------
# `_reduce` maps a value without a native msgpack/JSON form to (tag, payload), where the
# payload is made of encodable values, or to (None, replacement) for lossy conversions.

_DC_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _dc_fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """(all field names, names accepted by __init__) of a dataclass, cached."""
    info = _DC_FIELDS.get(cls)
    if info is None:
        fields = dataclasses.fields(cls)
        info = (tuple(f.name for f in fields), frozenset(f.name for f in fields if f.init))
        _DC_FIELDS[cls] = info
    return info


def _tz_out(tz: dt.tzinfo | None) -> object:
    if tz is None:
        return None
    if type(tz) is dt.timezone:
        offset, *name = tz.__getinitargs__()  # type: ignore[attr-defined]  # not in stubs
        return [offset // dt.timedelta(microseconds=1), name[0] if name else None]
    if type(tz) is ZoneInfo and tz.key is not None:
        return tz.key
    raise _Unencodable(
        type(tz), "only datetime.timezone and zoneinfo.ZoneInfo (by key) zones are supported"
    )


def _tz_in(spec: Any) -> dt.tzinfo | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return ZoneInfo(spec)
    offset = dt.timedelta(microseconds=spec[0])
    return dt.timezone(offset) if spec[1] is None else dt.timezone(offset, spec[1])


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:  # unorderable mixture: iteration order
        return list(items)


def _clock(o: dt.datetime | dt.time) -> list[object]:
    return [o.hour, o.minute, o.second, o.microsecond, o.fold, _tz_out(o.tzinfo)]


_REDUCE: dict[type, Callable[[Any], tuple[str | None, object]]] = {
    tuple: lambda o: ("tuple", list(o)),
    set: lambda o: ("set", _ordered(o)),
    frozenset: lambda o: ("frozenset", _ordered(o)),
    dt.datetime: lambda o: ("datetime", [o.year, o.month, o.day, *_clock(o)]),
    dt.date: lambda o: ("date", [o.year, o.month, o.day]),
    dt.time: lambda o: ("time", _clock(o)),
    dt.timedelta: lambda o: ("timedelta", [o.days, o.seconds, o.microseconds]),
    uuid.UUID: lambda o: ("uuid", o.hex),
    Decimal: lambda o: ("decimal", str(o)),
}

# Subclasses of builtins that are not enums, named tuples or dataclasses: base type.
_TO_BASE: dict[type, Callable[[Any], object]] = {
    str: str.__str__,  # str(o), int(o), float(o) would call overridable __str__ etc.
    int: int.__int__,
    float: float.__float__,
    bytearray: bytes,
    dt.datetime: lambda o: dt.datetime.combine(o.date(), o.timetz()),
    dt.date: lambda o: dt.date(o.year, o.month, o.day),
}
_BASES: tuple[type, ...] = (*_TO_BASE, bytes, dict, list, tuple, set, frozenset)


def _reduce(o: object) -> tuple[str | None, object]:
    reducer = _REDUCE.get(type(o))
    if reducer is not None:
        return reducer(o)
    if isinstance(o, type):
        raise _Unencodable(type(o), f"classes cannot be encoded (got {o!r})")
    if isinstance(o, enum.Enum):
        return "enum", [_class_path(type(o)), o.value]
    if dataclasses.is_dataclass(o):
        names, _ = _dc_fields(type(o))
        missing = object()
        values = {n: v for n in names if (v := getattr(o, n, missing)) is not missing}
        return "dataclass", [_class_path(type(o)), values]
    if _is_namedtuple(type(o)):
        return "namedtuple", [_class_path(type(o)), list(o)]  # type: ignore[call-overload]
    for base in _BASES:
        if isinstance(o, base):
            return None, _TO_BASE.get(base, base)(o)
    raise _Unencodable(type(o))


def _build_dataclass(path: str, values: dict[str, Any]) -> object:
    cls = _load_class(path, "a dataclass", dataclasses.is_dataclass)
    names, init = _dc_fields(cls)
    unknown = values.keys() - set(names)
    if unknown:
        raise _Undecodable(f"dataclass {path!r} has no fields {sorted(unknown)!r}")
    try:
        obj = cls(**{k: v for k, v in values.items() if k in init})
    except TypeError as exc:
        # e.g. a required InitVar: rebuild the state without __init__ when it is complete.
        if len(values) != len(names):
            raise _Undecodable(f"cannot rebuild dataclass {path!r}: {exc}") from exc
        obj = object.__new__(cls)
        init = frozenset[str]()
    for name, value in values.items():
        if name not in init:
            object.__setattr__(obj, name, value)
    return obj


def _build_datetime(v: list[Any]) -> dt.datetime:
    year, month, day, hour, minute, second, micro, fold, tz = v
    return dt.datetime(year, month, day, hour, minute, second, micro, _tz_in(tz), fold=fold)


_BUILD: dict[str, Callable[[Any], object]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "datetime": _build_datetime,
    "date": lambda v: dt.date(*v),
    "time": lambda v: dt.time(v[0], v[1], v[2], v[3], _tz_in(v[5]), fold=v[4]),
    "timedelta": lambda v: dt.timedelta(*v),
    "uuid": lambda v: uuid.UUID(hex=v),
    "decimal": Decimal,
    "enum": lambda v: _load_class(v[0], "an enum", lambda c: issubclass(c, enum.Enum))(v[1]),
    "dataclass": lambda v: _build_dataclass(v[0], v[1]),
    "namedtuple": lambda v: _load_class(v[0], "a named tuple", _is_namedtuple)(*v[1]),
}


# -- codecs ---------------------------------------------------------------------------


class Codec(ABC):
    """Turns values into bytes and back; failures raise `SerializationError`, chained."""

    name: str
    """The short name used in settings and stored with each invocation."""

    @abstractmethod
    def encode(self, value: object) -> bytes:
        """Encode `value`; SerializationError names the type that cannot be encoded."""

    @abstractmethod
    def decode(self, data: bytes) -> object:
        """Decode data produced by `encode`; SerializationError if malformed."""


def _encode_error(codec: str, value: object, exc: Exception) -> SerializationError:
    if isinstance(exc, _Unencodable):
        culprit, detail = exc.type_name, f": {exc.reason}" if exc.reason else ""
    else:
        culprit, detail = _type_name(type(value)), f": {exc}"
    message = f"the {codec} codec cannot encode a value of type {culprit!r}{detail}"
    return SerializationError(message)


def _decode_error(codec: str, exc: Exception) -> SerializationError:
    detail = str(exc) if isinstance(exc, _Undecodable) else repr(exc)
    return SerializationError(f"the {codec} codec cannot decode the data: {detail}")


# msgpack extension codes are wire format: never renumber, only append.
_EXT_BIGINT = 1
_EXT_NAMES = (
    "tuple set frozenset datetime date time timedelta uuid decimal enum dataclass namedtuple"
)
_EXT_CODES = {tag: code for code, tag in enumerate(_EXT_NAMES.split(), start=2)}
_EXT_TAGS = {code: tag for tag, code in _EXT_CODES.items()}


def _bigint_ext(n: int) -> msgpack.ExtType:
    return msgpack.ExtType(_EXT_BIGINT, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


_MSGPACK_NATIVE = frozenset({str, bytes, float, list, dict})


def _msgpack_default(o: object) -> object:
    while True:
        if type(o) is int:  # out of range when it comes from the packer itself
            return o if _INT_MIN <= o <= _INT_MAX else _bigint_ext(o)
        tag, payload = _reduce(o)
        if tag is not None:
            return msgpack.ExtType(_EXT_CODES[tag], _msgpack_pack(payload))
        # A lossy replacement must be packable as is: the packer calls `default` once.
        o = payload
        if type(o) in _MSGPACK_NATIVE:
            return o


def _msgpack_pack(value: object) -> bytes:
    # A fresh Packer costs ~0.1us, and a packer is not reentrant: nested values are
    # packed from inside `default` while the outer one is busy. A small first buffer
    # (it grows) matters: two live 256 KiB default buffers cost ~12us in malloc.
    packer = msgpack.Packer(
        default=_msgpack_default, strict_types=True, use_bin_type=True, buf_size=1024
    )
    data: bytes = packer.pack(value)
    return data


def _msgpack_ext(code: int, data: bytes) -> object:
    if code == _EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    tag = _EXT_TAGS.get(code)
    if tag is None:
        raise _Undecodable(f"unknown msgpack extension type {code}")
    return _BUILD[tag](_msgpack_unpack(data))


def _msgpack_unpack(data: bytes) -> object:
    return msgpack.unpackb(data, ext_hook=_msgpack_ext, raw=False, strict_map_key=False)


class MsgpackCodec(Codec):
    """msgpack with extension types for the values in the module docstring (default)."""

    name = "msgpack"

    def encode(self, value: object) -> bytes:
        try:
            return _msgpack_pack(value)
        except Exception as exc:
            raise _encode_error(self.name, value, exc) from exc

    def decode(self, data: bytes) -> object:
        try:
            return _msgpack_unpack(data)
        except Exception as exc:
            raise _decode_error(self.name, exc) from exc


def _to_json(o: object) -> object:
    if o is None or type(o) is str or type(o) is bool:
        return o
    if type(o) is int:
        return o if _INT_MIN <= o <= _INT_MAX else {_TAG: "int", "v": hex(o)}
    if type(o) is float:
        return o if math.isfinite(o) else {_TAG: "float", "v": repr(o)}
    if type(o) is list:
        return [_to_json(x) for x in o]
    if type(o) is dict:
        if _TAG not in o and all(type(k) is str for k in o):
            return {k: _to_json(v) for k, v in o.items()}
        return {_TAG: "dict", "v": [[_to_json(k), _to_json(v)] for k, v in o.items()]}
    if isinstance(o, bytes | bytearray | memoryview):
        return {_TAG: "bytes", "v": base64.b64encode(o).decode("ascii")}
    tag, payload = _reduce(o)
    if tag is None:
        return _to_json(payload)
    return {_TAG: tag, "v": _to_json(payload)}


_JSON_BUILD: dict[str, Callable[[Any], object]] = {
    **_BUILD,
    "dict": lambda v: {k: x for k, x in v},
    "bytes": base64.b64decode,
    "int": lambda v: int(v, 16),
    "float": float,
}


def _from_json(d: dict[str, Any]) -> object:
    tag = d.get(_TAG)
    if tag is None:
        return d
    if tag not in _JSON_BUILD:
        raise _Undecodable(f"unknown tag {tag!r} in JSON data")
    return _JSON_BUILD[tag](d["v"])


class JsonCodec(Codec):
    """Compact JSON; values JSON lacks travel as tagged objects `{"__fleet__": tag, "v": ...}`.

    A dict whose keys are not all str (or that has a "__fleet__" key) travels as a
    tagged list of [key, value] pairs. Ints outside the 64-bit range, nan and infinities
    are tagged too, so the output is strict JSON.
    """

    name = "json"

    def encode(self, value: object) -> bytes:
        try:
            text = json.dumps(
                _to_json(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            return text.encode("utf-8")
        except Exception as exc:
            raise _encode_error(self.name, value, exc) from exc

    def decode(self, data: bytes) -> object:
        try:
            return json.loads(data, object_hook=_from_json)
        except Exception as exc:
            raise _decode_error(self.name, exc) from exc


class PickleCodec(Codec):
    """pickle; decoding runs arbitrary code (`get_codec` needs `allow_pickle=True`)."""

    name = "pickle"

    def encode(self, value: object) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise _encode_error(self.name, value, exc) from exc

    def decode(self, data: bytes) -> object:
        try:
            return pickle.loads(data)  # gated by allow_pickle
        except Exception as exc:
            raise _decode_error(self.name, exc) from exc


CODECS: dict[str, type[Codec]] = {"msgpack": MsgpackCodec, "json": JsonCodec, "pickle": PickleCodec}
"""Codec names as used in settings, mapped explicitly to their classes."""

_INSTANCES: dict[str, Codec] = {}


def get_codec(name: str, *, allow_pickle: bool = False) -> Codec:
    """Return the (shared) codec called `name`.

    Args:
        name: a key of `CODECS`: "msgpack", "json" or "pickle".
        allow_pickle: the `allow_pickle` setting; required for "pickle".

    Raises:
        ConfigError: the name is unknown, or "pickle" is asked for without allow_pickle.
    """
    cls = CODECS.get(name)
    if cls is None:
        known = ", ".join(sorted(CODECS))
        raise ConfigError(f"unknown codec {name!r}; known codecs: {known}")
    if cls is PickleCodec and not allow_pickle:
        raise ConfigError(
            "codec 'pickle' must be enabled explicitly with the setting `allow_pickle = true`: "
            "decoding pickle data can execute arbitrary code, so anyone who can publish to "
            "your queues or write to the state store could run code on your workers"
        )
    codec = _INSTANCES.get(name)
    if codec is None:
        codec = _INSTANCES.setdefault(name, cls())
    return codec


def encode_call(
    codec: Codec,
    task: str,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    params: Sequence[str] = (),
) -> bytes:
    """Encode the arguments of a call to `task`.

    Args:
        codec: the task's codec.
        task: the task name (for error messages).
        args: positional arguments.
        kwargs: keyword arguments.
        params: the function's parameter names, to name positional arguments in errors.

    Raises:
        ArgumentEncodingError: an argument cannot be encoded; names it and its type.
        SerializationError: the arguments cannot be encoded for another reason.
    """
    try:
        return codec.encode([list(args), kwargs])
    except SerializationError as exc:
        named = [
            (params[i] if i < len(params) else f"positional argument {i}", value)
            for i, value in enumerate(args)
        ]
        for argument, value in [*named, *kwargs.items()]:
            try:
                codec.encode(value)
            except SerializationError as arg_exc:
                raise _argument_error(codec, task, argument, value, arg_exc) from arg_exc
        raise SerializationError(
            f"task {task!r}: the {codec.name} codec cannot encode its arguments: {exc}"
        ) from exc


def _argument_error(
    codec: Codec, task: str, argument: str, value: object, exc: SerializationError
) -> ArgumentEncodingError:
    cause = exc.__cause__
    own_type = _type_name(type(value))
    culprit = cause.type_name if isinstance(cause, _Unencodable) else own_type
    label = argument if argument.startswith("positional argument") else f"argument {argument!r}"
    if culprit == own_type:
        what = f"has type {culprit!r}"
    else:
        what = f"(type {own_type!r}) contains a value of type {culprit!r}"
    if not isinstance(cause, _Unencodable):
        hint = f" ({cause or exc})"
    elif cause.reason:
        hint = f" ({cause.reason})"
    else:
        hint = "; pass something serializable instead, such as an id to look the object up"
    return ArgumentEncodingError(
        f"task {task!r} {label} {what}, which the {codec.name} codec cannot encode{hint}",
        task=task,
        argument=argument,
        type_name=culprit,
    )


def decode_call(codec: Codec, data: bytes) -> tuple[tuple[object, ...], dict[str, object]]:
    """Decode what `encode_call` produced into (args, kwargs).

    Raises:
        SerializationError: the data is malformed or is not an encoded call.
    """
    value = codec.decode(data)
    if isinstance(value, list | tuple) and len(value) == 2:
        args, kwargs = value
        named = type(kwargs) is dict and all(type(k) is str for k in kwargs)
        if isinstance(args, list | tuple) and named:
            return tuple(args), kwargs
    raise SerializationError(
        f"{codec.name} data is not an encoded call ([args, kwargs]): got {type(value).__name__}"
    )


def call_key(task: str, data: bytes) -> str:
    """A stable hex digest of a task name and its encoded arguments (blake2b, 16 bytes)."""
    digest = hashlib.blake2b(task.encode("utf-8"), digest_size=16)
    digest.update(b"\x00")
    digest.update(data)
    return digest.hexdigest()


__all__ = [
    "CODECS",
    "ArgumentEncodingError",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "PickleCodec",
    "call_key",
    "decode_call",
    "encode_call",
    "get_codec",
]
