"""The wire formats of fleet's msgpack and JSON codecs.

Job: lay values out as msgpack bytes and as JSON-ready objects, using the tagged
payloads of `fleet._codec_types` for the types neither format has, and read them back.
The codecs (`fleet.codec`) wrap these with their error messages and trust policy.

Contract:
- msgpack: ints outside the range msgpack has (-2**63 to 2**64 - 1) travel as extension
  type 1 (big-endian, signed); each tag of `fleet._codec_types` as its own extension
  type, numbered from 2 in the order of `_EXT_NAMES` (wire format: never renumber, only
  append), with its payload packed inside. A value with a lossy replacement is packed
  as that replacement. `msgpack_unpacker(build)` builds the extension types with
  `build` (by tag) and raises `Undecodable` on an unknown one.
- JSON: `to_json` gives strict JSON: values JSON lacks (bytes, ints outside 64 bits,
  nan and infinities, dicts whose keys are not all str or that have a "__fleet__" key,
  and every tag of `fleet._codec_types`) travel as `{"__fleet__": tag, "v": payload}`.
  `json_hook(build)` builds them back with `build` plus the JSON-only tags, and raises
  `Undecodable` on an unknown tag.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import msgpack

from fleet._codec_types import Undecodable, reduce

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
"""The range msgpack encodes natively; other ints travel as a tagged big integer."""
_TAG = "__fleet__"


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
        tag, payload = reduce(o)
        if tag is not None:
            return msgpack.ExtType(_EXT_CODES[tag], msgpack_pack(payload))
        # A lossy replacement must be packable as is: the packer calls `default` once.
        o = payload
        if type(o) in _MSGPACK_NATIVE:
            return o


def msgpack_pack(value: object) -> bytes:
    # A fresh Packer costs ~0.1us, and a packer is not reentrant: nested values are
    # packed from inside `default` while the outer one is busy. A small first buffer
    # (it grows) matters: two live 256 KiB default buffers cost ~12us in malloc.
    packer = msgpack.Packer(
        default=_msgpack_default, strict_types=True, use_bin_type=True, buf_size=1024
    )
    data: bytes = packer.pack(value)
    return data


def msgpack_unpacker(build: dict[str, Callable[[Any], object]]) -> Callable[[bytes], object]:
    """An unpack function whose extension types are built by `build`."""

    def ext(code: int, data: bytes) -> object:
        if code == _EXT_BIGINT:
            return int.from_bytes(data, "big", signed=True)
        tag = _EXT_TAGS.get(code)
        if tag is None:
            raise Undecodable(f"unknown msgpack extension type {code}")
        return build[tag](unpack(data))

    def unpack(data: bytes) -> object:
        return msgpack.unpackb(data, ext_hook=ext, raw=False, strict_map_key=False)

    return unpack


def to_json(o: object) -> object:
    if o is None or type(o) is str or type(o) is bool:
        return o
    if type(o) is int:
        return o if _INT_MIN <= o <= _INT_MAX else {_TAG: "int", "v": hex(o)}
    if type(o) is float:
        return o if math.isfinite(o) else {_TAG: "float", "v": repr(o)}
    if type(o) is list:
        return [to_json(x) for x in o]
    if type(o) is dict:
        if _TAG not in o and all(type(k) is str for k in o):
            return {k: to_json(v) for k, v in o.items()}
        return {_TAG: "dict", "v": [[to_json(k), to_json(v)] for k, v in o.items()]}
    if isinstance(o, bytes | bytearray | memoryview):
        return {_TAG: "bytes", "v": base64.b64encode(o).decode("ascii")}
    tag, payload = reduce(o)
    if tag is None:
        return to_json(payload)
    return {_TAG: tag, "v": to_json(payload)}


_JSON_ONLY: dict[str, Callable[[Any], object]] = {
    "dict": lambda v: {k: x for k, x in v},
    "bytes": base64.b64decode,
    "int": lambda v: int(v, 16),
    "float": float,
}


def json_hook(build: dict[str, Callable[[Any], object]]) -> Callable[[dict[str, Any]], object]:
    """A json object hook whose tagged values are built by `build`."""
    table = {**build, **_JSON_ONLY}

    def hook(d: dict[str, Any]) -> object:
        tag = d.get(_TAG)
        if tag is None:
            return d
        if tag not in table:
            raise Undecodable(f"unknown tag {tag!r} in JSON data")
        return table[tag](d["v"])

    return hook
