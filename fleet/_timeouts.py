"""The error a caller gets when waiting for a result takes too long.

Job: turn "these invocations did not finish in time" into a `ResultTimeoutError` that
says why they may not have: each one's status, its queue, and how many consumers that
queue has (none means no worker is there to run it).

Contract: `result_timeout` never raises; what it cannot read (the state store or the
broker failing, a backend that cannot count consumers) it reports as "unknown". It
costs one state-store read and one broker stats call per queue, only on the timeout
path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fleet.broker import Broker
from fleet.errors import ResultTimeoutError
from fleet.state import InvocationRecord, StateStore

log = logging.getLogger(__name__)


def result_timeout(
    state: StateStore, broker: Broker, ids: Sequence[str], timeout: float | None
) -> ResultTimeoutError:
    """The error for `ids` (the invocations waited for) not all finishing in `timeout`."""
    try:
        records: dict[str, InvocationRecord] = {r.id: r for r in state.get(ids)}
    except Exception:
        log.debug("reading the records of timed-out invocations failed", exc_info=True)
        records = {}
    unfinished = [i for i in ids if i not in records or not records[i].status.final]
    unfinished = unfinished or list(ids)  # finished meanwhile: still report what timed out
    first = records.get(unfinished[0])
    status = first.status.value if first is not None else "unknown"
    queue = first.queue if first is not None and first.queue else "unknown"
    consumers = _consumers(broker, queue) if queue != "unknown" else None
    task = f" of {first.task}" if first is not None else ""
    if consumers is None:
        where = f"on queue {queue!r} (consumers unknown)"
    elif consumers == 0:
        where = f"on queue {queue!r}, which has no consumers (no worker serves it)"
    else:
        where = f"on queue {queue!r}, which has {consumers} consumer(s)"
    message = (
        f"invocation {unfinished[0]}{task} not finished after {timeout}s: status {status} {where}"
    )
    if len(unfinished) > 1:
        more = ", ".join(unfinished[1:6]) + (", ..." if len(unfinished) > 6 else "")
        message += f"; {len(unfinished) - 1} more of {len(ids)} not finished: {more}"
    return ResultTimeoutError(message, tuple(unfinished), status, queue, consumers)


def _consumers(broker: Broker, queue: str) -> int | None:
    try:
        count = broker.stats(queue).consumers
    except Exception:
        log.debug("broker stats of queue %r failed", queue, exc_info=True)
        return None
    return count if count >= 0 else None
