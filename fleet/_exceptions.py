"""Exceptions as they cross processes: `ErrorInfo` out of an exception, and back.

Job: on the worker, capture a task's exception as an `ErrorInfo` (dotted type name,
message, traceback text, msgpack-encoded args); on the caller, rebuild an exception of
the same type with the remote traceback attached.

Contract:
- `error_info` and `rebuild` never raise.
- `rebuild` returns an instance of the original type when it can be imported here and
  is an `Exception` subclass: constructed from the original args, else from the message,
  else created without calling `__init__` (args set, other attributes missing). It has
  the remote traceback as `remote_traceback` and as a PEP 678 note.
- Otherwise it returns `fleet.errors.RemoteError` with the type name, message and
  traceback. That includes BaseExceptions that are not Exceptions (SystemExit,
  KeyboardInterrupt, ...): raising those in the caller would stop its process or look
  like a local interrupt.
- Types are only imported by module name plus attribute lookup, and only exception
  classes are ever called.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import traceback

from fleet.codec import Codec, get_codec
from fleet.errors import RemoteError
from fleet.state import ErrorInfo

_NOTE = "Remote traceback (most recent call last) from fleet worker:\n"
_TB_HEAD = "Traceback (most recent call last):\n"
_RESOLVED: dict[str, type[BaseException]] = {}


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def error_info(exc: BaseException, codec: Codec | None = None) -> ErrorInfo:
    """Capture `exc` so that it can be stored and rebuilt in another process.

    Args:
        exc: the exception a task raised.
        codec: the codec for the args; msgpack by default. `rebuild` must be given the
            same one.

    Returns:
        The type as 'module.QualName' ('builtins.ValueError'), `str(exc)`, the formatted
        traceback, and the encoded args (None when they cannot be encoded).
    """
    name = _dotted(type(exc))
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {name} object>"
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = ""
    args: list[object] = list(exc.args)
    if isinstance(exc, RemoteError):  # keep the original type name through re-raises
        prefix = f"{exc.type_name}: "
        original = message[len(prefix) :] if message.startswith(prefix) else message
        args = [exc.type_name, original, exc.remote_traceback]
    try:
        encoded: bytes | None = (codec or get_codec("msgpack")).encode(args)
    except Exception:
        encoded = None
    return ErrorInfo(type=name, message=message, traceback=text, args=encoded)


def import_exception_type(name: str) -> type[BaseException]:
    """Import an exception class by dotted name, e.g. for `retry_for` in settings.

    Args:
        name: 'module.QualName' ('builtins.ValueError', 'pkg.mod.Outer.Inner'); a bare
            name ('ValueError') means a builtin.

    Raises:
        ValueError: `name` is empty or malformed.
        ImportError: no module and attribute path matches `name`.
        TypeError: `name` names something that is not an exception class.
    """
    cls = _RESOLVED.get(name)
    if cls is not None:
        return cls
    parts = name.split(".") if "." in name else ["builtins", name]
    if not all(part.isidentifier() for part in parts):
        raise ValueError(f"{name!r} is not a dotted name of an exception class")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: object = sys.modules.get(module_name) or importlib.import_module(module_name)
        except Exception:  # not a module (or it fails to import): try a shorter prefix
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"cannot import {name!r}: {exc}") from exc
        if not (isinstance(obj, type) and issubclass(obj, BaseException)):
            raise TypeError(f"{name!r} is {obj!r}, not an exception class")
        _RESOLVED[name] = obj
        return obj
    raise ImportError(f"cannot import {name!r}: no module of that name")


def _resolve(name: str) -> type[BaseException] | None:
    try:
        return import_exception_type(name)
    except Exception:
        return None


def _construct(
    cls: type[BaseException], info: ErrorInfo, codec: Codec | None
) -> BaseException | None:
    args: tuple[object, ...] | None = None
    if info.args is not None:
        try:
            decoded = (codec or get_codec("msgpack")).decode(info.args)
            if isinstance(decoded, list | tuple):
                args = tuple(decoded)
        except Exception:
            args = None
    candidates = [(info.message,)] if args is None else [args, (info.message,)]
    for candidate in candidates:
        try:
            exc = cls(*candidate)
        except Exception:
            continue
        if isinstance(exc, cls):
            return exc
    try:  # e.g. keyword-only constructor arguments: skip __init__, keep args and message
        exc = cls.__new__(cls, *candidates[0])
        str(exc)
    except Exception:
        return None
    return exc


def rebuild(info: ErrorInfo, codec: Codec | None = None) -> BaseException:
    """Rebuild the exception described by `info`, with its remote traceback attached.

    Args:
        info: what `error_info` captured.
        codec: the codec `error_info` was given; msgpack by default.

    Returns:
        An instance of the original type, or `RemoteError` when it cannot be rebuilt
        here (see the module docstring). Never raises.
    """
    exc: BaseException | None = None
    try:
        cls = _resolve(info.type)
        if cls is not None and issubclass(cls, Exception):
            exc = _construct(cls, info, codec)
    except Exception:
        exc = None
    if exc is None:
        exc = RemoteError(info.type, info.message, info.traceback)
    if info.traceback:
        with contextlib.suppress(Exception):  # e.g. a type whose attributes are read-only
            exc.remote_traceback = info.traceback  # type: ignore[attr-defined]  # any type
        with contextlib.suppress(Exception):
            exc.add_note(_NOTE + info.traceback.removeprefix(_TB_HEAD).rstrip("\n"))
    return exc


def exception_type_matches(info: ErrorInfo, types: tuple[type[BaseException], ...]) -> bool:
    """Whether the exception in `info` is an instance of one of `types` (for retry_for).

    The type is imported by name; when it cannot be, only an exact match of dotted
    names (or BaseException among `types`) counts.
    """
    cls = _resolve(info.type)
    if cls is not None:
        return issubclass(cls, types)
    return BaseException in types or any(_dotted(t) == info.type for t in types)


__all__ = ["error_info", "exception_type_matches", "import_exception_type", "rebuild"]
