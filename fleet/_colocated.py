"""The embedded default's submit: record and message in one SQLite commit.

Job: when the state store and the broker are SQLite tables in the same file (the
embedded default, `.fleet/fleet.db`), write a submit's invocation records and their
messages in ONE write transaction, then ring the consumers' doorbells.

Contract:
- `shared(runtime, queue)` is true when both backends are the SQLite ones on the same
  file and `queue` has no `max_length` (the broker counts a limited queue before it
  inserts, in a transaction of its own: such queues take the usual path).
- `send(runtime, prepared, messages)` commits the records (PENDING, with no recovery
  deadline: their messages are durable in the same commit, so there is nothing for
  recovery to republish) and `messages` together, or neither: a failing insert of
  either rolls both back, and the caller gets the state store's error (through
  `fleet._records.register`, so nothing of the call is left to run). No window
  exists between record and message, and no worker waits on a missing record. After
  the commit the consumers of the queue are woken (`SQLiteBroker.ring`, which never
  raises).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from fleet import _records
from fleet.broker import Message
from fleet.broker.sqlite import SQLiteBroker
from fleet.extensions import Dispatcher
from fleet.state.sqlite import SQLiteStateStore

if TYPE_CHECKING:
    from fleet._prepare import Prepared
    from fleet._runtime import Runtime


def shared(runtime: Runtime, queue: str) -> bool:
    """Whether a submit to `queue` can write record and message in one commit."""
    broker, state = runtime.broker, runtime.state
    return (
        isinstance(broker, SQLiteBroker)
        and isinstance(state, SQLiteStateStore)
        and broker.db.path == state.db.path
        and broker.spec(queue).max_length is None
    )


def send(
    runtime: Runtime,
    prepared: Prepared,
    messages: Sequence[Message],
    dispatcher: Dispatcher | None = None,
) -> None:
    """Commit the records and `messages` together, then ring; see the module docstring."""
    broker = cast(SQLiteBroker, runtime.broker)  # `shared` said so
    state = cast(SQLiteStateStore, runtime.state)
    _records.register(
        state,
        prepared.records(deadline=False),
        dispatcher,
        write=lambda records: state.register(records, also=lambda tx: broker.insert(tx, messages)),
    )
    broker.ring([prepared.queue])
