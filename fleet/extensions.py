"""Extension points: the hooks through which capabilities (triggers, concurrency control,
workflows, metrics) plug into the core without the core importing them.

Job: define the `Extension` base class (every hook a no-op) and the `Dispatcher` the
core calls, and re-export the hook inputs (`fleet._hook_inputs`, one frozen dataclass
per hook input) and `ExtensionError`.

Contract:
- An extension overrides only the hooks it needs. `Dispatcher` computes once, when
  built, the tuple of extensions overriding each hook, so an unused hook costs the
  caller one empty-tuple check (`if dispatcher.after_change_hooks:`), nothing more.
- Before-hooks (`before_publish`, `before_claim`) refuse by raising `ExtensionError`,
  which propagates to the caller; any other exception from them is wrapped in an
  `ExtensionError` naming the extension (a broken policy must not let work through
  silently). After-hooks (`after_change`, `on_lead`) never break the commit that
  preceded them: their exceptions are logged with the extension's name and swallowed.
- `around_call` and `around_publish` hooks nest in registration order: the first
  extension is outermost.
- `task_options`: the task options an extension owns (e.g. `{"triggers"}`); the core
  refuses an unknown option naming the extension that would own it.

Where the core calls each hook (wired in phase 2; see /work/shared/EXTENSIONS.md):

- `bind(app)`: once, when the app is built with its extensions (`Fleet.__init__`;
  `BUILTIN` ones first, then those given as `Fleet(extensions=[...])`).
- `check_options(task, options, signature)`: when a task is decorated with options the
  extension owns (`Fleet.task`); not a hot-path hook.
- `before_publish(batch)`: `Fleet.submit` after `_prepare.prepare`, before registering
  and publishing; the asyncio submit likewise. It may return `Reuse` decisions: those
  calls are not registered, and their callers get the existing invocation instead.
- `before_claim(claims)`: `worker/intake.py` `Intake.claim`, before `state.apply(claims)`.
  A `Hold` parks the invocation BLOCKED (in the same batch of compare-and-sets as the
  claims) until its `until` (or until an extension wakes it), acks its message and
  frees its slot; its `memo` is kept in the history note (`hold_note`) and comes back
  in `Claim.memo` on the next claim (the envelope of the release carries it).
- `around_call(call, proceed)`: `worker/executor.py`, around `task.func(*args, **kw)`;
  `call.headers` are the message's headers.
- `around_publish(publish, proceed)`: `Fleet.submit` (through `fleet._submit`),
  around registering and publishing a batch until the broker confirmed it; headers put
  in `publish.headers` travel with its messages. Not called by the asyncio submit, nor
  when recovery publishes again.
- `after_change(applied)`: `fleet/_transitions.apply`, after the state store applied a
  batch of changes: the one place every status change goes through (app, aio,
  committer, executor, process, recovery); inline mode calls it too.
- `on_lead(now)`: `worker/leader.py`, on every leader tick beside
  `recovery.release_due`, only while this process holds the lease.
- `services()`: `worker/supervisor.py` beside `leader.start()`, and `worker/child.py`
  before `run()`.

`Applied` holds only the status changes that took effect (a compare-and-set that lost
is not in it): per change the invocation id, task name, previous and new status, the
encoded result (SUCCESS) or the error (FAILED), the invocation's encoded arguments and
codec when the caller has them at hand (None otherwise: the record is not fetched just
for the hook), and the parent invocation id ('' for a top-level call).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from fleet._hook_inputs import (
    Applied,
    AppliedChange,
    Call,
    Claim,
    ClaimBatch,
    Hold,
    Publish,
    PublishBatch,
    Reuse,
    hold_memo,
    hold_note,
)
from fleet.errors import ExtensionError, TaskDefinitionError

if TYPE_CHECKING:
    pass

log = logging.getLogger("fleet.extensions")


class Extension:
    """Base of every extension; each hook is a no-op. See the module docstring."""

    task_options: ClassVar[frozenset[str]] = frozenset()

    def bind(self, app: Any) -> None:
        """Called once with the app the extension serves."""

    def check_options(
        self, task: str, options: Mapping[str, Any], signature: inspect.Signature
    ) -> None:
        """Called when `task` is decorated with options this extension owns (only
        those, by name); refuse bad ones by raising `TaskDefinitionError`."""

    def before_publish(self, batch: PublishBatch) -> Sequence[Reuse]:
        """Calls not to register (each caller gets an existing invocation instead);
        refuse the batch by raising `ExtensionError`."""
        return ()

    def before_claim(self, claims: ClaimBatch) -> Sequence[Hold]:
        """Invocations not to run now; refuse all by raising `ExtensionError`."""
        return ()

    def around_call(self, call: Call, proceed: Callable[[], Any]) -> Any:
        """Run `proceed()` (the task function, or the next extension) and return its value."""
        return proceed()

    def around_publish(self, publish: Publish, proceed: Callable[[], None]) -> None:
        """Run `proceed()` (register and publish the batch, waiting for the broker's
        confirms; or the next extension); exceptions of `proceed` must propagate."""
        proceed()

    def after_change(self, applied: Applied) -> None:
        """React to status changes that took effect; exceptions are logged, never raised."""

    def on_lead(self, now: float) -> None:
        """Leader tick (epoch seconds); exceptions are logged, never raised."""

    def services(self) -> Sequence[Any]:
        """Per-process services to start (objects with start() and stop())."""
        return ()


BUILTIN: tuple[str, ...] = (
    "fleet.triggers._extension:AppTriggers",
    "fleet.concurrency._app:AppConcurrency",
    "fleet.workflows._extension:Workflows",
)
"""Extensions every app is built with, before its own, as 'module:class' (the core
imports no capability package; each is loaded by name when an app is built)."""
OPTIONAL: dict[str, str] = {
    "metrics": "fleet.monitor.metrics:Metrics",
    "tracing": "fleet.monitor.tracing:Tracing",
}
"""Extensions added after `BUILTIN` when their boolean setting is on (setting name ->
'module:class'); the class is called with the app's settings."""


def builtin(settings: Any = None, given: Sequence[Extension] = ()) -> list[Extension]:
    """A new instance of each `BUILTIN` extension, then of each `OPTIONAL` one whose
    setting is on in `settings`, unless `given` (the app's own) has one of its class."""
    found = []
    for path in BUILTIN:
        module, _, name = path.partition(":")
        found.append(getattr(importlib.import_module(module), name)())
    for setting, path in OPTIONAL.items():
        if settings is not None and getattr(settings, setting, False):
            module, _, name = path.partition(":")
            cls = getattr(importlib.import_module(module), name)
            if not any(isinstance(ext, cls) for ext in given):
                found.append(cls(settings))
    return found


HOOKS = (
    "bind",
    "before_publish",
    "before_claim",
    "around_call",
    "around_publish",
    "after_change",
    "on_lead",
)
HOOKS_ALL = (*HOOKS, "services")


def _overrides(ext: Extension, hook: str) -> bool:
    return getattr(type(ext), hook) is not getattr(Extension, hook)


class Dispatcher:
    """Calls the hooks of a fixed list of extensions; see the module docstring."""

    def __init__(self, extensions: Iterable[Extension] = ()) -> None:
        self.extensions: tuple[Extension, ...] = tuple(extensions)
        for ext in self.extensions:
            if not isinstance(ext, Extension):
                raise ExtensionError(f"{ext!r} is not a fleet.extensions.Extension")
        by_hook = {h: tuple(e for e in self.extensions if _overrides(e, h)) for h in HOOKS_ALL}
        self.bind_hooks = by_hook["bind"]
        self.before_publish_hooks = by_hook["before_publish"]
        self.before_claim_hooks = by_hook["before_claim"]
        self.around_call_hooks = by_hook["around_call"]
        self.around_publish_hooks = by_hook["around_publish"]
        self.after_change_hooks = by_hook["after_change"]
        self.on_lead_hooks = by_hook["on_lead"]
        self.services_hooks = by_hook["services"]
        owners: dict[str, Extension] = {}
        for ext in self.extensions:
            for option in type(ext).task_options:
                if option in owners:
                    raise ExtensionError(
                        f"task option {option!r} is claimed by both {owners[option]!r} and {ext!r}"
                    )
                owners[option] = ext
        self.option_owners: Mapping[str, Extension] = owners

    def bind(self, app: Any) -> None:
        for ext in self.bind_hooks:
            ext.bind(app)

    def check_options(
        self, task: str, owned: Mapping[str, Any], signature: inspect.Signature
    ) -> None:
        """Hand each extension the options of `task` it owns (`Extension.check_options`)."""
        by_owner: dict[int, tuple[Extension, dict[str, Any]]] = {}
        for option, value in owned.items():
            ext = self.option_owners[option]
            by_owner.setdefault(id(ext), (ext, {}))[1][option] = value
        for ext, options in by_owner.values():
            ext.check_options(task, options, signature)

    def refuse_unknown(self, task: str, unknown: Iterable[str], core: Iterable[str]) -> None:
        """Raise `TaskDefinitionError` naming options of `task` that neither the core nor
        an extension owns, the options each owner knows, and a close match's owner."""
        known = {"core": sorted(core)}
        for option, ext in sorted(self.option_owners.items()):
            known.setdefault(type(ext).__name__, []).append(option)
        every = [o for names in known.values() for o in names]
        hints = []
        for option in sorted(unknown):
            close = difflib.get_close_matches(option, every, n=1)
            if close:
                owner = self.option_owners.get(close[0])
                who = "the core" if owner is None else type(owner).__name__
                hints.append(f"{option!r}: did you mean {close[0]!r} (owned by {who})?")
        raise TaskDefinitionError(
            f"task {task!r}: unknown option(s) {sorted(unknown)}; no extension of this app "
            f"owns them (an extension not added to Fleet(extensions=[...])?). "
            + " ".join(hints)
            + (" " if hints else "")
            + "Known, by owner: "
            + "; ".join(f"{owner}: {', '.join(names)}" for owner, names in known.items())
        )

    def before_publish(self, batch: PublishBatch) -> list[Reuse]:
        reuses: list[Reuse] = []
        for ext in self.before_publish_hooks:
            reuses.extend(_before(ext, "before_publish", ext.before_publish, batch) or ())
        return reuses

    def before_claim(self, claims: ClaimBatch) -> list[Hold]:
        holds: list[Hold] = []
        for ext in self.before_claim_hooks:
            holds.extend(_before(ext, "before_claim", ext.before_claim, claims) or ())
        return holds

    def around_call(self, call: Call, func: Callable[[], Any]) -> Any:
        """Run `func` inside every `around_call` hook, the first extension outermost."""
        proceed = func
        for ext in reversed(self.around_call_hooks):
            proceed = _wrap(ext, call, proceed)
        return proceed()

    def around_publish(self, publish: Publish, func: Callable[[], None]) -> None:
        """Run `func` inside every `around_publish` hook, the first extension outermost."""
        proceed = func
        for ext in reversed(self.around_publish_hooks):
            proceed = _wrap_publish(ext, publish, proceed)
        proceed()

    def after_change(self, applied: Applied) -> None:
        if not applied.changes:
            return
        for ext in self.after_change_hooks:
            try:
                ext.after_change(applied)
            except Exception:
                first = applied.changes[0]
                log.exception(
                    "extension %r failed in after_change",
                    ext,
                    extra={"invocation_id": first.invocation_id, "task": first.task},
                )

    def on_lead(self, now: float) -> None:
        for ext in self.on_lead_hooks:
            try:
                ext.on_lead(now)
            except Exception:
                log.exception("extension %r failed in on_lead", ext)

    def services(self) -> list[Any]:
        return [service for ext in self.services_hooks for service in ext.services()]


def _before(ext: Extension, hook: str, method: Callable[[Any], Any], arg: Any) -> Any:
    try:
        return method(arg)
    except ExtensionError:
        raise
    except Exception as exc:
        raise ExtensionError(f"extension {ext!r} failed in {hook}: {exc!r}") from exc


def _wrap(ext: Extension, call: Call, proceed: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: ext.around_call(call, proceed)


def _wrap_publish(
    ext: Extension, publish: Publish, proceed: Callable[[], None]
) -> Callable[[], None]:
    return lambda: ext.around_publish(publish, proceed)


__all__ = [
    "Applied",
    "AppliedChange",
    "Call",
    "Claim",
    "ClaimBatch",
    "Dispatcher",
    "Extension",
    "ExtensionError",
    "Hold",
    "Publish",
    "PublishBatch",
    "Reuse",
    "builtin",
    "hold_memo",
    "hold_note",
]
