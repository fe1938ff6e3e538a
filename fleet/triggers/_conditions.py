"""Matching a source (a status change, an event) against a condition, and deriving the
triggered call's arguments from it.

Job: the pure part of evaluating triggers, testable without stores or clocks.

Contract:
- `Source` is what happened: a status change of an invocation (`of_change`) or an
  emitted event (`of_event`). Its arguments and result are decoded lazily, only when a
  filter or a derivation asks for them (an unwatched task costs nothing here).
- `matches(cond, source)` for the non-cron kinds: status (any change, or one status),
  result (SUCCESS, with the decoded result equal to the decoded filter value),
  exception (FAILED, with the error's type equal to the filter or a subclass of it;
  unimportable types match by name only), event (name and payload fields equal; bool
  and numbers are told apart), then the argument filter `where` (the watched call's
  arguments bound to the task's parameters, defaults applied) and the registered
  `check` predicate, called with the `Source`.
- `derive_call(definition, source, signature)` returns (args, kwargs): the fixed call,
  then the `derive` paths, then the registered `function`'s mapping, later ones
  overriding earlier keywords. It raises `DeriveError` with a message naming the
  trigger, the argument and the cause when a path is missing, the function fails, the
  call does not fit the target's signature, or an argument cannot be encoded.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fleet._exceptions import import_exception_type
from fleet.codec import decode_call, encode_call, get_codec
from fleet.errors import FleetError, SerializationError
from fleet.state import ErrorInfo
from fleet.status import Status
from fleet.triggers import Condition, Kind, TriggerDefinition
from fleet.triggers._declare import resolve_function

log = logging.getLogger("fleet.triggers")
Signature = Callable[[str], inspect.Signature | None]
"""The signature of a task by name, or None when this process does not know it."""


class DeriveError(FleetError):
    """The triggered call cannot be built from its source; the firing records why."""


@dataclass(frozen=True)
class Source:
    """What happened; see the module docstring."""

    key: str
    """The source invocation id, or the event id: the firing key of a direct trigger."""
    task: str = ""
    event: str = ""
    status: Status | None = None
    error: ErrorInfo | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    codec: str = "msgpack"
    load_args: Callable[[], bytes | None] = lambda: None
    load_result: Callable[[], bytes | None] = lambda: None
    signature: Signature = lambda task: None

    @classmethod
    def of_event(cls, event_id: str, name: str, payload: Mapping[str, Any]) -> Source:
        return cls(key=event_id, event=name, payload=dict(payload))

    @property
    def label(self) -> str:
        """How a firing records its source."""
        return f"event:{self.event}:{self.key}" if self.event else self.key

    @cached_property
    def call(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The watched invocation's (args, kwargs); ((), {}) when unknown."""
        data = self.load_args()
        if not data:
            return (), {}
        return decode_call(get_codec(self.codec), data)

    @cached_property
    def arguments(self) -> dict[str, Any]:
        """The watched invocation's arguments by parameter name (defaults applied);
        only keywords when the task's signature is unknown here."""
        args, kwargs = self.call
        sig = self.signature(self.task) if self.task else None
        if sig is None:
            return dict(kwargs)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return dict(kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    @cached_property
    def result(self) -> Any:
        data = self.load_result()
        return None if data is None else get_codec(self.codec).decode(data)


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _subclass(raised: str, wanted: str) -> bool:
    if raised == wanted or raised.rpartition(".")[2] == wanted:
        return True
    try:
        return issubclass(import_exception_type(raised), import_exception_type(wanted))
    except Exception:  # unimportable here: names had to be equal
        return False


def matches(cond: Condition, source: Source, codec: str = "msgpack") -> bool:
    """Whether `source` meets the (non-cron, non-composite) condition `cond`, whose
    result filter value is encoded with `codec` (the trigger's)."""
    kind = cond.kind
    if kind is Kind.EVENT:
        if source.event != cond.event:
            return False
        if not all(
            k in source.payload and _equal(source.payload[k], v) for k, v in cond.payload.items()
        ):
            return False
    else:
        if source.event or source.task != cond.task:
            return False
        if kind is Kind.STATUS and cond.status is not None and source.status != cond.status:
            return False
        if kind is Kind.RESULT:
            if source.status is not Status.SUCCESS:
                return False
            if cond.value is not None:
                wanted = get_codec(codec).decode(cond.value)
                if not _equal(source.result, wanted):
                    return False
        if kind is Kind.EXCEPTION:
            if source.status is not Status.FAILED or source.error is None:
                return False
            if cond.exception and not _subclass(source.error.type, cond.exception):
                return False
        if cond.where:
            arguments = source.arguments
            if not all(k in arguments and _equal(arguments[k], v) for k, v in cond.where.items()):
                return False
    return not cond.check or bool(resolve_function(cond.check)(source))


def _walk(definition: TriggerDefinition, param: str, path: str, source: Source) -> Any:
    root, *rest = path.split(".")
    roots: dict[str, Callable[[], Any]] = {
        "result": lambda: source.result,
        "args": lambda: source.arguments,
        "payload": lambda: source.payload,
        "source": lambda: source.key,
        "event": lambda: source.event,
    }
    value = roots[root]()
    walked = root
    for step in rest:
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif not isinstance(value, Mapping) and hasattr(value, step):
            value = getattr(value, step)
        else:
            raise DeriveError(
                f"trigger {definition.id!r}: derived argument {param!r}: {walked!r} has no"
                f" {step!r} (value {value!r})"
            )
        walked += "." + step
    return value


def derive_call(
    definition: TriggerDefinition, source: Source, signature: Signature
) -> tuple[tuple[Any, ...], dict[str, Any], bytes]:
    """The triggered call (args, kwargs) and its encoding; see the module docstring."""
    codec = get_codec(definition.codec)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    try:
        if definition.args:
            args, kwargs = decode_call(codec, definition.args)
        for param, path in definition.derive.items():
            kwargs[param] = _walk(definition, param, path, source)
    except DeriveError:
        raise
    except Exception as exc:  # a result that does not decode, a failing loader
        raise DeriveError(f"trigger {definition.id!r}: cannot read its source: {exc!r}") from exc
    if definition.function:
        try:
            extra = resolve_function(definition.function)(source)
        except Exception as exc:
            raise DeriveError(
                f"trigger {definition.id!r}: function {definition.function!r} failed: {exc!r}"
            ) from exc
        if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
            raise DeriveError(
                f"trigger {definition.id!r}: function {definition.function!r} returned"
                f" {extra!r}, not a mapping of argument names"
            )
        kwargs.update(extra)
    sig = signature(definition.task)
    params: tuple[str, ...] = ()
    if sig is not None:
        params = tuple(sig.parameters)
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise DeriveError(
                f"trigger {definition.id!r}: arguments {args!r} {kwargs!r} do not fit task"
                f" {definition.task!r}: {exc}"
            ) from exc
    try:
        encoded = encode_call(codec, definition.task, args, kwargs, params)
    except SerializationError as exc:
        raise DeriveError(f"trigger {definition.id!r}: {exc}") from exc
    return args, kwargs, encoded
