"""The data behind the in-memory broker (see `fleet.broker.memory`).

Job: hold the queues, dead letters, declared specs and listener mailboxes of one
`memory://name`, shared by every broker of that name in the process.

Contract: not thread-safe by itself; every access holds `Hub.cond` (mailboxes have
their own condition). A queue is a heap of ready entries ordered by (-priority, id),
with lazy deletion (`Entry.gone`), plus the held entries by id.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass

from fleet.broker import DeadLetter, Message
from fleet.queues import QueueSpec

log = logging.getLogger("fleet.broker.memory")


@dataclass(eq=False, slots=True)
class Entry:
    id: int
    message: Message
    created: float
    count: int = 0
    holder: str = ""
    visible_at: float = 0.0
    in_heap: bool = False
    gone: bool = False


class Queue:
    def __init__(self) -> None:
        self.heap: list[tuple[int, int, Entry]] = []
        self.held: dict[int, Entry] = {}
        self.dead: dict[int, tuple[DeadLetter, Message]] = {}
        self.consumers: set[str] = set()

    def push(self, entry: Entry) -> None:
        if not entry.in_heap:
            entry.in_heap = True
            heapq.heappush(self.heap, (-entry.message.priority, entry.id, entry))

    def expire(self, now: float) -> None:
        """Expired holds (their consumer died or hung) become ready again."""
        for entry in [e for e in self.held.values() if e.visible_at <= now]:
            self.give_back(entry)

    def forget(self, entry: Entry) -> None:
        """Remove an entry for good (acked, dropped or dead-lettered)."""
        entry.gone = True
        self.held.pop(entry.id, None)

    def give_back(self, entry: Entry) -> None:
        del self.held[entry.id]
        entry.holder = ""
        entry.visible_at = 0.0
        self.push(entry)

    def ready(self) -> list[Entry]:
        return [e for _, _, e in self.heap if not e.gone]

    def head(self) -> tuple[int, int, Entry] | None:
        while self.heap and self.heap[0][2].gone:
            heapq.heappop(self.heap)[2].in_heap = False
        return self.heap[0] if self.heap else None


class Hub:
    """The data of one `memory://name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.queues: dict[str, Queue] = {}
        self.specs: dict[str, QueueSpec] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self.ids = itertools.count(1)

    def queue(self, name: str) -> Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queue()
        return q

    def spec(self, name: str) -> QueueSpec:
        spec = self.specs.get(name)
        return spec if spec is not None else QueueSpec(name=name)

    def bury(self, message: Message, reason: str, now: float) -> None:
        """Dead-letter `message` (or drop it when its queue has dead-lettering off)."""
        if not self.spec(message.queue).dead_letter:
            log.warning(
                "dropped message %s of queue %r: %s", message.invocation_id, message.queue, reason
            )
            return
        n = next(self.ids)
        letter = DeadLetter(message.queue, message.body, reason, str(n), now, message.headers)
        self.queue(message.queue).dead[n] = (letter, message)

    def enqueue(self, message: Message, now: float) -> None:
        self.queue(message.queue).push(Entry(next(self.ids), message, now))


class Mailbox:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: deque[bytes] = deque()
        self.woken = False
