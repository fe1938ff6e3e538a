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
- A codec given `trusted` (a `TrustedModules`) takes those classes only from the modules
  it allows and refuses any other with `SerializationError` naming the type, before
  importing anything. A `Fleet`'s codec (`app.codec`, what workers decode arguments
  and producers results with) always has one: the modules of the app's registered
  tasks plus the setting `codec_modules`. `get_codec(name)` with no `trusted` allows
  any importable module: use it only on data you wrote yourself.
The mapping of non-native types to tagged payloads lives in `fleet._codec_types`, and
their layout in msgpack and JSON in `fleet._codec_wire`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Sequence

from fleet._codec_types import (
    BUILD,
    TrustedModules,
    Undecodable,
    Unencodable,
    builders,
    type_name,
)
from fleet._codec_wire import json_hook, msgpack_pack, msgpack_unpacker, to_json
from fleet.errors import ConfigError, SerializationError


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


# -- codecs ---------------------------------------------------------------------------


class Codec(ABC):
    """Turns values into bytes and back; failures raise `SerializationError`, chained."""

    name: str
    """The short name used in settings and stored with each invocation."""

    def __init__(self, trusted: TrustedModules | None = None) -> None:
        self.trusted = trusted
        """Where decoded classes may come from; None: any importable module."""

    @abstractmethod
    def encode(self, value: object) -> bytes:
        """Encode `value`; SerializationError names the type that cannot be encoded."""

    @abstractmethod
    def decode(self, data: bytes) -> object:
        """Decode data produced by `encode`; SerializationError if malformed."""


def _encode_error(codec: str, value: object, exc: Exception) -> SerializationError:
    if isinstance(exc, Unencodable):
        culprit, detail = exc.type_name, f": {exc.reason}" if exc.reason else ""
    else:
        culprit, detail = type_name(type(value)), f": {exc}"
    message = f"the {codec} codec cannot encode a value of type {culprit!r}{detail}"
    return SerializationError(message)


def _decode_error(codec: str, exc: Exception) -> SerializationError:
    detail = str(exc) if isinstance(exc, Undecodable) else repr(exc)
    return SerializationError(f"the {codec} codec cannot decode the data: {detail}")


class MsgpackCodec(Codec):
    """msgpack with extension types for the values in the module docstring (default)."""

    name = "msgpack"

    def __init__(self, trusted: TrustedModules | None = None) -> None:
        super().__init__(trusted)
        self._unpack = msgpack_unpacker(BUILD if trusted is None else builders(trusted))

    def encode(self, value: object) -> bytes:
        try:
            return msgpack_pack(value)
        except Exception as exc:
            raise _encode_error(self.name, value, exc) from exc

    def decode(self, data: bytes) -> object:
        try:
            return self._unpack(data)
        except Exception as exc:
            raise _decode_error(self.name, exc) from exc


class JsonCodec(Codec):
    """Compact JSON; values JSON lacks travel as tagged objects `{"__fleet__": tag, "v": ...}`.

    A dict whose keys are not all str (or that has a "__fleet__" key) travels as a
    tagged list of [key, value] pairs. Ints outside the 64-bit range, nan and infinities
    are tagged too, so the output is strict JSON.
    """

    name = "json"

    def __init__(self, trusted: TrustedModules | None = None) -> None:
        super().__init__(trusted)
        self._hook = json_hook(BUILD if trusted is None else builders(trusted))

    def encode(self, value: object) -> bytes:
        try:
            text = json.dumps(
                to_json(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            return text.encode("utf-8")
        except Exception as exc:
            raise _encode_error(self.name, value, exc) from exc

    def decode(self, data: bytes) -> object:
        try:
            return json.loads(data, object_hook=self._hook)
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


def get_codec(
    name: str, *, allow_pickle: bool = False, trusted: TrustedModules | None = None
) -> Codec:
    """Return the codec called `name`: shared when `trusted` is None, else a new one.

    Args:
        name: a key of `CODECS`: "msgpack", "json" or "pickle".
        allow_pickle: the `allow_pickle` setting; required for "pickle".
        trusted: the modules decoded classes may come from (see the module docstring);
            pickle ignores it (it runs whatever the data says).

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
    if trusted is not None:
        return cls(trusted)
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
    own_type = type_name(type(value))
    culprit = cause.type_name if isinstance(cause, Unencodable) else own_type
    label = argument if argument.startswith("positional argument") else f"argument {argument!r}"
    if culprit == own_type:
        what = f"has type {culprit!r}"
    else:
        what = f"(type {own_type!r}) contains a value of type {culprit!r}"
    if not isinstance(cause, Unencodable):
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
    "TrustedModules",
    "call_key",
    "decode_call",
    "encode_call",
    "get_codec",
]
