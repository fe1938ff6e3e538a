"""Concurrency control as an app's built-in extension, built with the process's runtime.

Job: `AppConcurrency` is the extension every `Fleet` is built with
(`fleet.extensions.BUILTIN`). It owns the concurrency task options (checked when a
task is decorated), and builds, on first use in a process, the policy
(`ConcurrencyExtension`) over the `LimitStore` kept with the app's state store, wired
to the app: task options and signatures, the app's codec, large values, invocation
statuses and arguments, and the wake-up of invocations handed a running permit.

Contract:
- Building an app opens nothing. Tasks without concurrency options, and calls without
  an idempotency key, cost a set lookup per hook call: the policy is not even built
  for an app none of whose tasks uses it.
- `wake(ids)`: those of `ids` still BLOCKED go PENDING and are published again
  (`fleet.worker.recovery.requeue`, a compare-and-set, so the leader's release and a
  wake never publish one twice); one still PENDING (woken while being parked) is woken
  by the policy once parked.
- Inline mode: the policy runs over an in-process memory store and the inline runner's
  invocations; registration limits, idempotency keys and the result cache apply (a
  call reusing one still running in another thread waits for it); running limits and
  rate limits do not (an inline call runs at once in its caller's thread, and there is
  no worker to hold it back).
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from fleet import _values
from fleet.codec import Codec, get_codec
from fleet.concurrency._extension import ConcurrencyExtension
from fleet.concurrency._memory import MemoryLimitStore
from fleet.concurrency._options import OPTIONS, policy_of
from fleet.errors import ConfigError, TaskDefinitionError
from fleet.extensions import Applied, ClaimBatch, Extension, Hold, PublishBatch, Reuse
from fleet.status import Status

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.state import StateStore

log = logging.getLogger("fleet.concurrency")


class AppConcurrency(Extension):
    """Concurrency control of one app; see the module docstring."""

    task_options: ClassVar[frozenset[str]] = OPTIONS

    def __init__(self) -> None:
        self._app: Fleet | None = None
        self._lock = threading.Lock()
        self._policy: ConcurrencyExtension | None = None
        self._pid = 0
        self._limited: set[str] = set()
        """Tasks that declare concurrency options (the others are let through)."""
        self._inline_store: MemoryLimitStore | None = None

    @property
    def app(self) -> Fleet:
        if self._app is None:
            raise ConfigError("the concurrency extension is not bound to an app")
        return self._app

    def bind(self, app: Any) -> None:
        self._app = app

    def check_options(
        self, task: str, options: Mapping[str, Any], signature: inspect.Signature
    ) -> None:
        try:
            policy_of(options, signature)
        except ConfigError as exc:
            raise TaskDefinitionError(f"task {task!r}: {exc}") from None
        self._limited.add(task)
        with self._lock:
            if self._policy is not None:
                self._policy.invalidate(task)  # redefined: parse its options again

    # -- hooks --------------------------------------------------------------------------

    def before_publish(self, batch: PublishBatch) -> Sequence[Reuse]:
        if batch.task not in self._limited and not any(batch.idempotency_keys):
            return ()
        return self.policy().before_publish(batch)

    def before_claim(self, claims: ClaimBatch) -> Sequence[Hold]:
        limited = self._limited
        if not any(c.task in limited for c in claims.claims):
            return ()
        return self.policy().before_claim(claims)

    def after_change(self, applied: Applied) -> None:
        limited = self._limited
        if any(c.task in limited for c in applied.changes):
            self.policy().after_change(applied)

    def on_lead(self, now: float) -> None:
        if self._limited:
            self.policy().on_lead(now)

    # -- the policy ---------------------------------------------------------------------

    def policy(self) -> ConcurrencyExtension:
        """This process's policy, built on first use (again in a forked child)."""
        policy = self._policy
        if policy is None or self._pid != os.getpid():
            with self._lock:
                if self._policy is None or self._pid != os.getpid():
                    self._policy, self._pid = self._build(), os.getpid()
                policy = self._policy
        return policy

    def _build(self) -> ConcurrencyExtension:
        app = self.app
        common: dict[str, Any] = {
            "options": self._options,
            "signature": self._signature,
            "codec": self._codec,
        }
        if app.settings.inline:
            if self._inline_store is None:
                self._inline_store = MemoryLimitStore()
            # No status lookups: the store lives and dies with this app, and the inline
            # runner forgets a key whose call ended however it ended.
            return ConcurrencyExtension(self._inline_store, **common)
        from fleet.concurrency import limit_store

        state = app.runtime().state
        return ConcurrencyExtension(
            limit_store(state),
            resolve=lambda data: _values.resolve(state, data),
            load_args=lambda invocation_id: _args(state, invocation_id),
            status=lambda invocation_id: _status(state, invocation_id),
            wake=self._wake,
            **common,
        )

    def _options(self, name: str) -> Mapping[str, Any] | None:
        task = self.app.tasks.get(name)
        return None if task is None else task.options.extensions

    def _signature(self, name: str) -> inspect.Signature | None:
        task = self.app.tasks.get(name)
        return None if task is None else task.signature

    def _codec(self, name: str) -> Codec:
        codec = self.app.codec
        return codec if name == codec.name else get_codec(name)

    def _wake(self, ids: Sequence[str]) -> None:
        # The worker's module, loaded only by processes that wake someone (workers).
        from fleet.worker.recovery import requeue

        app = self.app
        records = [r for r in app.runtime().state.get(ids) if r.status is Status.BLOCKED]
        if records:
            requeue(app, records, f"{os.getpid()}:concurrency", "a running permit was freed")


def _args(state: StateStore, invocation_id: str) -> bytes | None:
    found = state.get([invocation_id])
    return found[0].args if found else None


def _status(state: StateStore, invocation_id: str) -> Status | None:
    found = state.get([invocation_id])
    return found[0].status if found else None
