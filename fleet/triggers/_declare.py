"""Declaring triggers: the `Trigger` builder, stable ids, registered functions.

Job: let users write `Trigger.cron("*/5 * * * *")` or `Trigger.on_result(extract,
derive={"rows": "result"})` (on a task, or at run time), and turn each into a
`TriggerDefinition` for a target task with an id derived from the definition; keep
the registry of functions a trigger may name (`check` predicates and argument
functions), found again by 'module:qualname' in any process.

Contract:
- `trigger_id(target, condition, name)` is stable across processes and runs: a digest
  of the target and the name when one is given, else of the target and the condition.
  Declaring the same trigger twice gives the same id; changing what it calls (fixed
  arguments, derivation) keeps the id and replaces the definition; changing an
  unnamed condition gives a new id, and `declare_for_task` removes the old one.
- `declare(store, definitions, now)` saves only what changed, keeping the stored
  `created` and `enabled` (a trigger paused by an operator stays paused when a process
  declares it again); `declare_for_task` also deletes the triggers declared on that
  task that are no longer declared.
- `function(f)` registers `f` under 'module:qualname'; `resolve_function(path)` finds
  it, importing the module if needed (which runs its declarations), and refuses a
  function that was never registered: data never names arbitrary code to call.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from fleet.codec import encode_call, get_codec
from fleet.errors import ConfigError
from fleet.status import Status
from fleet.triggers import (
    Condition,
    Kind,
    Scalar,
    TriggerDefinition,
    TriggerStore,
)
from fleet.triggers._params import condition_params

F = TypeVar("F", bound=Callable[..., Any])
_REGISTRY: dict[str, Callable[..., Any]] = {}


def function(func: F) -> F:
    """Register `func` so triggers may name it (as `check=` or `function=`)."""
    _REGISTRY[_path(func)] = func
    return func


def _path(func: Callable[..., Any]) -> str:
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise ConfigError(f"{func!r}: a trigger function must be a module-level function")
    return f"{module}:{qualname}"


def resolve_function(path: str) -> Callable[..., Any]:
    """The registered function named `path` ('module:qualname'); ConfigError if none."""
    found = _REGISTRY.get(path)
    if found is None:
        module = path.partition(":")[0]
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ConfigError(f"trigger function {path!r}: cannot import {module!r}") from exc
        found = _REGISTRY.get(path)
    if found is None:
        raise ConfigError(
            f"trigger function {path!r} is not registered; decorate it with"
            " @fleet.triggers.function"
        )
    return found


def _function_ref(value: Callable[..., Any] | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    function(value)  # declaring runs in every process importing the module
    return _path(value)


def _task_name(task: object) -> str:
    name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{task!r} is neither a task nor a task name")
    return name


def _exception_name(exception: type[BaseException] | str) -> str:
    if isinstance(exception, str):
        return exception
    if isinstance(exception, type) and issubclass(exception, BaseException):
        return f"{exception.__module__}.{exception.__qualname__}"
    raise ConfigError(f"{exception!r} is not an exception type")


def trigger_id(target: str, condition: Condition, name: str = "") -> str:
    """The stable id of a trigger calling `target`; see the module docstring."""
    basis: list[object] = ["name", target, name]
    if not name:
        basis = ["condition", target, condition.kind.value, condition_params(condition)]
    text = json.dumps(basis, sort_keys=True, default=lambda b: bytes(b).hex())
    return "tr-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


_ANY: Any = object()


@dataclass(frozen=True, slots=True)
class Trigger:
    """A condition and how to call the task it is declared on; see the module docstring.

    The keyword arguments shared by every constructor say how to call the target:
    `args` / `kwargs` fixed arguments; `derive` maps a target parameter to a source path
    ('result', 'result.total', 'args.order_id', 'payload.order_id', 'source', 'event');
    `function` a registered function (or its 'module:qualname') taking the source and
    returning keyword arguments; `name` names the trigger (its id then depends only on
    the target and the name); `codec` encodes fixed arguments and result filters.
    """

    condition: Condition
    name: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    derive: Mapping[str, str] = field(default_factory=dict)
    function: str = ""
    codec: str = "msgpack"
    enabled: bool = True

    @classmethod
    def cron(
        cls, expression: str, *, timezone: str = "", catchup: str = "", limit: int = 0, **call: Any
    ) -> Trigger:
        """Every tick of a croniter expression (e.g. '*/5 * * * *', '@hourly')."""
        return cls._make(Condition.on_cron(expression, timezone, catchup, limit), call)

    @classmethod
    def on_status(
        cls,
        task: object,
        status: Status | str | None = None,
        *,
        where: Mapping[str, Scalar] | None = None,
        check: Callable[..., bool] | str | None = None,
        **call: Any,
    ) -> Trigger:
        """When an invocation of `task` reaches `status` (None: any status change)."""
        to = None if status is None else Status(status)
        cond = Condition.on_status(_task_name(task), to, where, _function_ref(check))
        return cls._make(cond, call)

    @classmethod
    def on_result(
        cls,
        task: object,
        value: Any = _ANY,
        *,
        where: Mapping[str, Scalar] | None = None,
        check: Callable[..., bool] | str | None = None,
        **call: Any,
    ) -> Trigger:
        """When an invocation of `task` succeeds (with a result equal to `value`, if given)."""
        codec = get_codec(call.get("codec", "msgpack"))
        encoded = None if value is _ANY else codec.encode(value)
        cond = Condition.on_result(_task_name(task), encoded, where, _function_ref(check))
        return cls._make(cond, call)

    @classmethod
    def on_exception(
        cls,
        task: object,
        exception: type[BaseException] | str = "",
        *,
        where: Mapping[str, Scalar] | None = None,
        check: Callable[..., bool] | str | None = None,
        **call: Any,
    ) -> Trigger:
        """When an invocation of `task` fails (with `exception` or a subclass, if given)."""
        cond = Condition.on_exception(
            _task_name(task), _exception_name(exception), where, _function_ref(check)
        )
        return cls._make(cond, call)

    @classmethod
    def on_event(
        cls,
        event: str,
        payload: Mapping[str, Scalar] | None = None,
        *,
        check: Callable[..., bool] | str | None = None,
        **call: Any,
    ) -> Trigger:
        """When `app.emit(event, payload)` is called with these payload fields."""
        return cls._make(Condition.on_event(event, payload, _function_ref(check)), call)

    @classmethod
    def all_of(cls, *parts: Trigger | Condition, within: float, **call: Any) -> Trigger:
        """When every part is met within `within` seconds (each source counts once)."""
        return cls._make(Condition.all_of(_conditions(parts), within), call)

    @classmethod
    def any_of(cls, *parts: Trigger | Condition, **call: Any) -> Trigger:
        """When any part is met (once per source)."""
        return cls._make(Condition.any_of(_conditions(parts)), call)

    @classmethod
    def _make(cls, condition: Condition, call: Mapping[str, Any]) -> Trigger:
        known = {"name", "args", "kwargs", "derive", "function", "codec", "enabled"}
        stray = sorted(set(call) - known)
        if stray:
            raise ConfigError(f"a trigger takes no {', '.join(map(repr, stray))}")
        values = dict(call)
        values["args"] = tuple(values.get("args", ()))
        values["kwargs"] = dict(values.get("kwargs", {}))
        values["derive"] = dict(values.get("derive", {}))
        values["function"] = _function_ref(values.get("function"))
        return cls(condition, **values)

    def definition(
        self, target: object, *, declared: bool = False, created: float = 0.0
    ) -> TriggerDefinition:
        """This trigger calling `target` (a task or its name), as stored."""
        task = _task_name(target)
        codec = get_codec(self.codec)
        fixed = b""
        if self.args or self.kwargs:
            fixed = encode_call(codec, task, self.args, dict(self.kwargs))
        return TriggerDefinition(
            id=trigger_id(task, self.condition, self.name),
            name=self.name or _describe(self.condition),
            condition=self.condition,
            task=task,
            args=fixed,
            codec=codec.name,
            enabled=self.enabled,
            created=created,
            derive=dict(self.derive),
            function=self.function,
            declared=declared,
        )


def _conditions(parts: Sequence[Trigger | Condition]) -> list[Condition]:
    found = [p.condition if isinstance(p, Trigger) else p for p in parts]
    for part in found:
        if not isinstance(part, Condition):
            raise ConfigError(f"{part!r} is not a Trigger or Condition")
    return found


def _describe(cond: Condition) -> str:
    if cond.kind is Kind.CRON:
        return f"cron {cond.cron}"
    if cond.kind in (Kind.ALL, Kind.ANY):
        return f"{cond.kind.value} of " + ", ".join(_describe(p) for p in cond.parts)
    what = cond.status.value if cond.status is not None else cond.kind.value
    return f"{cond.subject} {what}"


def _same(a: TriggerDefinition, b: TriggerDefinition) -> bool:
    return replace(a, created=0.0, enabled=True) == replace(b, created=0.0, enabled=True)


def declare(
    store: TriggerStore, definitions: Iterable[TriggerDefinition], now: float
) -> list[TriggerDefinition]:
    """Save the definitions that are new or changed; return those saved."""
    existing = {d.id: d for d in store.triggers()}
    return _declare(store, existing, definitions, now)


def _declare(
    store: TriggerStore,
    existing: Mapping[str, TriggerDefinition],
    definitions: Iterable[TriggerDefinition],
    now: float,
) -> list[TriggerDefinition]:
    saved = []
    for given in definitions:
        old = existing.get(given.id)
        if old is not None and _same(old, given):
            continue
        if old is not None:
            given = replace(given, created=old.created, enabled=old.enabled)  # noqa: PLW2901
        elif not given.created:
            given = replace(given, created=now)  # noqa: PLW2901
        store.save_trigger(given)
        saved.append(given)
    return saved


def declare_for_task(
    store: TriggerStore, task: str, triggers: Sequence[Trigger], now: float
) -> list[TriggerDefinition]:
    """Declare `triggers` on `task` and remove the triggers declared on it before that
    are no longer declared (run-time triggers are left alone); return those saved."""
    wanted = [t.definition(task, declared=True) for t in triggers]
    existing = {d.id: d for d in store.triggers()}
    ids = {d.id for d in wanted}
    for old in existing.values():
        if old.declared and old.task == task and old.id not in ids:
            store.delete_trigger(old.id)
    return _declare(store, existing, wanted, now)
