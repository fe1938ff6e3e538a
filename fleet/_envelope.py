"""Wire formats of fleet's own messages: task envelopes and notifications.

Job: turn an invocation into the bytes a broker carries and back, and the same for the
small push notifications that tell waiters an invocation finished (and tell workers to
cancel one). Contract: always msgpack, versioned, independent of the argument codec
(the arguments travel as opaque bytes encoded by it, whose name the envelope carries so
that a worker can refuse a codec other than its setting `codec`). `unpack` raises
`SerializationError` with a reason fit for a dead-letter header on anything malformed.
"""

from __future__ import annotations

import msgpack

from fleet._value_class import value_class
from fleet.errors import SerializationError
from fleet.extensions import hold_memo
from fleet.state import ErrorInfo, InvocationRecord
from fleet.status import Status

VERSION = 1
RECORD_GRACE = 10.0
"""Seconds a worker keeps trying to claim a message whose invocation record is not
there yet before it dead-letters the message. Producers on a broker that sends at once
write the record while the message is on its way (see `fleet._submit`); one whose write
took more than half of this publishes the message again."""


@value_class
class Envelope:
    """One invocation as a message body."""

    id: str
    task: str
    args: bytes
    codec: str
    reply_to: str = ""
    parent: str = ""
    module: str = ""
    """Module that defines the task, as the producer saw it. Untrusted: workers never
    import it (only their app's registry counts); it only names a task module that
    failed to import there in the dead-letter reason."""
    attempt: int = 0
    """Attempts started before this delivery (retries and recovered runs)."""
    created: float = 0.0
    """When the invocation was registered; set when a held invocation is published
    again (0: not known, the claim's time stands in)."""
    memo: str = ""
    """The memo of the extension's hold it comes back from (`fleet.extensions.Hold`)."""


def pack(env: Envelope) -> bytes:
    fields = [
        VERSION,
        env.id,
        env.task,
        env.args,
        env.codec,
        env.reply_to,
        env.parent,
        env.module,
        env.attempt,
    ]
    if env.created or env.memo:  # only released holds carry them: others stay as short
        fields += [env.created, env.memo]
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def unpack(body: bytes) -> Envelope:
    try:
        data = msgpack.unpackb(body, raw=False, use_list=True)
    except Exception as exc:
        raise SerializationError(f"message body is not a fleet envelope: {exc}") from exc
    if not isinstance(data, list) or not data or data[0] != VERSION or len(data) not in (9, 11):
        raise SerializationError(f"message body is not a fleet envelope v{VERSION}")
    _, id_, task, args, codec, reply_to, parent, module, attempt = data[:9]
    if not (isinstance(id_, str) and id_ and isinstance(task, str) and task):
        raise SerializationError("message body lacks an invocation id or task name")
    if not isinstance(args, bytes) or not isinstance(codec, str) or not isinstance(attempt, int):
        raise SerializationError("message body has malformed arguments")
    created, memo = data[9:] if len(data) == 11 else (0.0, "")
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise SerializationError("message body has a malformed creation time")
    if not isinstance(memo, str):
        raise SerializationError("message body has a malformed hold memo")
    return Envelope(
        id_, task, args, codec, str(reply_to), str(parent), str(module), attempt, created, memo
    )


@value_class
class Outcome:
    """How an invocation ended, as a waiter learns it."""

    id: str
    status: Status
    result: bytes | None = None
    error: ErrorInfo | None = None
    complete: bool = True
    """False when the notification left the value out (too large): read the store."""


_RESULT, _CANCEL = "r", "c"
MAX_INLINE = 48 * 1024
"""Results larger than this are not carried in notifications."""


def pack_outcome(outcome: Outcome) -> bytes:
    error = outcome.error
    err = None if error is None else [error.type, error.message, error.traceback, error.args]
    result = outcome.result
    complete = outcome.complete
    size = len(result or b"") + (len(error.traceback) if error else 0)
    if size > MAX_INLINE:
        result, err, complete = None, None, False
    return msgpack.packb(  # type: ignore[no-any-return]
        [_RESULT, outcome.id, outcome.status.value, result, err, complete], use_bin_type=True
    )


def pack_cancel(invocation_id: str) -> bytes:
    return msgpack.packb([_CANCEL, invocation_id], use_bin_type=True)  # type: ignore[no-any-return]


def unpack_notes(payload: bytes) -> list[Outcome | str]:
    """The notes in a payload (one or several joined by `join_notes`): outcomes, and ids
    of invocations to cancel. Noise is skipped."""
    notes: list[Outcome | str] = []
    unpacker = msgpack.Unpacker(raw=False, use_list=True)
    unpacker.feed(payload)
    try:
        for data in unpacker:
            if data[0] == _CANCEL:
                notes.append(str(data[1]))
                continue
            _, id_, status, result, err, complete = data
            error = None if err is None else ErrorInfo(err[0], err[1], err[2], err[3])
            notes.append(Outcome(id_, Status(status), result, error, bool(complete)))
    except Exception:
        return notes
    return notes


def join_notes(notes: list[tuple[str, bytes]], limit: int = 60 * 1024) -> list[tuple[str, bytes]]:
    """Merge notes to the same address into as few payloads of at most `limit` bytes as
    possible (one datagram or message per address instead of one per outcome)."""
    merged: dict[str, list[bytes]] = {}
    for address, payload in notes:
        parts = merged.setdefault(address, [])
        if parts and len(parts[-1]) + len(payload) <= limit:
            parts[-1] += payload
        else:
            parts.append(payload)
    return [(address, payload) for address, parts in merged.items() for payload in parts]


def from_record(record: InvocationRecord) -> Envelope:
    """The envelope that (re)publishes a stored invocation; one released from an
    extension's hold (BLOCKED) carries its creation time and the hold's memo (kept in
    the note of the change that parked it, its last history entry)."""
    held = record.status is Status.BLOCKED
    memo = hold_memo(record.history[-1].note) if held and record.history else ""
    return Envelope(
        record.id,
        record.task,
        record.args,
        record.codec,
        record.reply_to,
        record.parent,
        "",
        record.attempt,
        record.created if held else 0.0,
        memo if held else "",
    )
