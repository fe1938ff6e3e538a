"""The connections one process holds on behalf of one app.

Job: open the broker, the state store and the result waiter of an app once per process
(`Fleet.runtime()` opens it lazily, again in a forked child), and declare each queue
before its first publish.

Contract: `declare(names)` declares the queues this runtime has not declared yet (thread
safe), only those the queue definitions define; `close()` flushes this process's
background publishes (`fleet._pipeline`) and follow-up writes (`fleet._followup`),
then closes the waiter, the broker and the state store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from fleet import _followup, _pipeline
from fleet._waiter import Waiter
from fleet.broker import Broker, open_broker
from fleet.config import Settings
from fleet.queues import QueueTable
from fleet.state import StateStore, open_state


class Runtime:
    """The connections one process uses on behalf of one app."""

    def __init__(self, settings: Settings, queues: QueueTable) -> None:
        self.pid = os.getpid()
        self.broker: Broker = open_broker(settings.broker_url, settings=settings)
        self.state: StateStore = open_state(settings.state_url, settings=settings)
        self.waiter = Waiter(self.broker, self.state)
        self._queues = queues
        self._declared: set[str] = set()
        self._lock = threading.Lock()

    def declare(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self._declared]
        if missing:
            with self._lock:
                self.broker.declare(self._queues.declarable(missing))
                self._declared.update(missing)

    def close(self) -> None:
        _pipeline.close(self)  # first: its confirms feed the follow-up
        _followup.close(self)  # then: it writes to the store
        self.waiter.close()
        self.broker.close()
        self.state.close()
