"""The inputs and decisions of the extension hooks (`fleet.extensions`).

Job: one frozen dataclass per hook input (`PublishBatch`, `ClaimBatch`, `Call`,
`Publish`, `Applied`) and per decision a hook returns (`Reuse`, `Hold`), plus the two
helpers that keep a `Hold`'s memo in the history note of the BLOCKED change.

Contract: plain values, no behaviour beyond `hold_note`/`hold_memo`; every name here is
re-exported by `fleet.extensions`, the module extensions import from. What each field
means for the hook that receives it is documented there and on the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from fleet._value_class import value_class
from fleet.status import Status

if TYPE_CHECKING:
    from fleet.state import ErrorInfo


@value_class
class PublishBatch:
    """Input of `before_publish`: calls of one task about to be registered and published."""

    task: str
    ids: tuple[str, ...]
    args: tuple[bytes, ...]
    """Encoded calls, one per id (as `fleet.codec.encode_call` made them)."""
    codec: str
    options: Mapping[str, Any] = field(default_factory=dict)
    """The task's extension-owned options (see `Extension.task_options`)."""
    due: float | None = None
    idempotency_keys: tuple[str, ...] = ()
    """Per id, the caller's idempotency key ('' for none); () when no call has one."""


@value_class
class Reuse:
    """A `before_publish` decision: do not register `invocation_id`; its caller gets
    `existing` instead (an equivalent invocation, a cached result, an idempotency key's
    owner; possibly another id of the same batch, which is registered)."""

    invocation_id: str
    existing: str
    reason: str


@value_class
class Claim:
    """One invocation a worker is about to claim."""

    invocation_id: str
    task: str
    args: bytes
    codec: str
    created: float = 0.0
    """When the invocation was registered (orders waiting lines, oldest first)."""
    memo: str = ""
    """The `Hold.memo` of the hold it comes back from ('' if none)."""


@value_class
class Hold:
    """A `before_claim` decision: do not run `invocation_id` now (BLOCKED until `until`)."""

    invocation_id: str
    until: float | None
    """When to try again (epoch seconds); None: until an extension releases it."""
    reason: str
    memo: str = ""
    """Kept with the held invocation and handed back in `Claim.memo` when it is claimed
    again (e.g. the rate-limit reservation it waits for)."""


_MEMO = " [memo: "


def hold_note(hold: Hold) -> str:
    """The history note of the BLOCKED change that parks `hold`'s invocation: its
    reason, and its memo kept where a release finds it (`hold_memo`)."""
    return f"{hold.reason}{_MEMO}{hold.memo}]" if hold.memo else hold.reason


def hold_memo(note: str) -> str:
    """The memo kept in a `hold_note` ('' if none)."""
    head, sep, tail = note.rpartition(_MEMO)
    return tail[:-1] if sep and head and tail.endswith("]") else ""


@value_class
class ClaimBatch:
    """Input of `before_claim`."""

    claims: tuple[Claim, ...]
    worker: str
    now: float


@value_class
class Call:
    """Input of `around_call`: the task function about to run."""

    invocation_id: str
    task: str
    attempt: int
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    """The headers of the message that brought the invocation (those a producer's
    `around_publish` added, e.g. a trace context). Untrusted input from a queue."""


@value_class
class Publish:
    """Input of `around_publish`: calls of one task being registered and published."""

    task: str
    ids: tuple[str, ...]
    queue: str
    headers: dict[str, str] = field(default_factory=dict)
    """A carrier: what the hooks put here before `proceed()` travels as headers with
    every message of the batch (e.g. a W3C `traceparent`)."""


@value_class
class AppliedChange:
    """One status change that took effect in the state store."""

    invocation_id: str
    task: str
    source: Status | None
    """The status it left (None when the invocation was just registered)."""
    status: Status
    """The status it reached."""
    args: bytes | None = None
    """The invocation's encoded call ([args, kwargs]), possibly a large-value reference;
    None when the caller does not have it at hand (an extension that needs it loads it,
    and only for the tasks it cares about)."""
    codec: str = ""
    result: bytes | None = None
    """SUCCESS: the encoded result (may be a large-value reference)."""
    error: ErrorInfo | None = None
    """FAILED (and RETRY): the error."""
    parent: str = ""
    at: float = 0.0
    note: str = ""
    """The history note of the change (for BLOCKED: the `Hold.reason`); '' if none."""


@value_class
class Applied:
    """Input of `after_change`: the changes of one `state.apply` that took effect."""

    changes: tuple[AppliedChange, ...]
