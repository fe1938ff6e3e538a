"""The value model shared by fleet's msgpack and JSON codecs.

Job: map values that have no native msgpack/JSON form (tuples, sets, datetimes, UUIDs,
decimals, enums, named tuples, dataclasses, big ints) to a (tag, payload) pair made of
encodable values, and build them back. Contract: `reduce` and the builders are exact
inverses for every type `fleet.codec` documents; classes are imported only by module
name plus attribute lookup, and only enum, dataclass and named tuple classes are ever
called. The builders of a codec given a `TrustedModules` take classes only from the
modules it allows, checked before anything is imported; the module-level `BUILD`
(codecs with no policy) takes them from any importable module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import importlib
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo


class Undecodable(ValueError):
    """Raised inside the decoding hooks; turned into SerializationError by the codec."""


class Unencodable(TypeError):
    """Raised inside the type hooks; turned into SerializationError by the codec."""

    def __init__(self, value_type: type, reason: str = "") -> None:
        super().__init__(reason or f"unsupported type {type_name(value_type)!r}")
        self.type_name = type_name(value_type)
        self.reason = reason


def type_name(cls: type) -> str:
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
        except Undecodable:
            found = None
        if found is not cls:
            why = f"class {path!r} cannot be imported by that name (defined in a function?)"
            raise Unencodable(cls, why)
        _PATHS[cls] = path
    return path


def _import_class(path: str) -> object:
    module_name, _, qualname = path.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise Undecodable(f"cannot import class {path!r}: {exc}") from exc
    return obj


class TrustedModules:
    """The modules whose enum, dataclass and named tuple classes a codec may rebuild.

    Args:
        listed: module names; each allows itself and its submodules ("shop" allows
            "shop.models").
        exact: called on a miss, returns module names allowed exactly (a `Fleet`
            passes the modules of its registered tasks, which may grow).
    """

    def __init__(
        self, listed: Iterable[str] = (), exact: Callable[[], Iterable[str]] = tuple
    ) -> None:
        self.listed = tuple(listed)
        self._exact = exact
        self._allowed: set[str] = set()  # answers so far (only yes: the hot path)

    def allows(self, module: str) -> bool:
        if module in self._allowed:
            return True
        ok = any(module == m or module.startswith(m + ".") for m in self.listed)
        if ok or module in set(self._exact()):
            self._allowed.add(module)
            return True
        return False


def _load_class(
    path: str, kind: str, check: Callable[[type], bool], trusted: TrustedModules | None = None
) -> type:
    if trusted is not None:
        module = path.partition(":")[0]
        if not trusted.allows(module):
            raise Undecodable(
                f"refusing to decode type {path!r}: its module {module!r} is neither the "
                "module of a registered task nor listed in the setting `codec_modules`"
            )
    cls = _CLASSES.get(path)
    if cls is None:
        obj = _import_class(path)
        if not (isinstance(obj, type) and check(obj)):
            raise Undecodable(f"{path!r} is not {kind} class; refusing to decode it")
        cls = _CLASSES[path] = obj
    return cls


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


# -- the value model shared by msgpack and JSON ----------------------------------------
# `reduce` maps a value without a native msgpack/JSON form to (tag, payload), where the
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
    raise Unencodable(
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


def reduce(o: object) -> tuple[str | None, object]:
    reducer = _REDUCE.get(type(o))
    if reducer is not None:
        return reducer(o)
    if isinstance(o, type):
        raise Unencodable(type(o), f"classes cannot be encoded (got {o!r})")
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
    raise Unencodable(type(o))


def _build_dataclass(cls: type, path: str, values: dict[str, Any]) -> object:
    names, init = _dc_fields(cls)
    unknown = values.keys() - set(names)
    if unknown:
        raise Undecodable(f"dataclass {path!r} has no fields {sorted(unknown)!r}")
    try:
        obj = cls(**{k: v for k, v in values.items() if k in init})
    except TypeError as exc:
        # e.g. a required InitVar: rebuild the state without __init__ when it is complete.
        if len(values) != len(names):
            raise Undecodable(f"cannot rebuild dataclass {path!r}: {exc}") from exc
        obj = object.__new__(cls)
        init = frozenset[str]()
    for name, value in values.items():
        if name not in init:
            object.__setattr__(obj, name, value)
    return obj


def _build_datetime(v: list[Any]) -> dt.datetime:
    year, month, day, hour, minute, second, micro, fold, tz = v
    return dt.datetime(year, month, day, hour, minute, second, micro, _tz_in(tz), fold=fold)


def _is_enum(cls: type) -> bool:
    return issubclass(cls, enum.Enum)


def builders(trusted: TrustedModules | None = None) -> dict[str, Callable[[Any], object]]:
    """The builder of each tag; classes only from the modules `trusted` allows."""

    def load(path: str, kind: str, check: Callable[[type], bool]) -> type:
        return _load_class(path, kind, check, trusted)

    return {
        "tuple": tuple,
        "set": set,
        "frozenset": frozenset,
        "datetime": _build_datetime,
        "date": lambda v: dt.date(*v),
        "time": lambda v: dt.time(v[0], v[1], v[2], v[3], _tz_in(v[5]), fold=v[4]),
        "timedelta": lambda v: dt.timedelta(*v),
        "uuid": lambda v: uuid.UUID(hex=v),
        "decimal": Decimal,
        "enum": lambda v: load(v[0], "an enum", _is_enum)(v[1]),
        "dataclass": lambda v: _build_dataclass(
            load(v[0], "a dataclass", dataclasses.is_dataclass), v[0], v[1]
        ),
        "namedtuple": lambda v: load(v[0], "a named tuple", _is_namedtuple)(*v[1]),
    }


BUILD = builders()
"""Builders that take classes from any importable module (codecs with no policy)."""
