"""The durable record of workflow runs: `HistoryStore` and its records.

Job: keep, for every workflow invocation, the ordered list of the steps it took
(`Event`: a child call, a recorded value, a version marker, a timer, a signal taken),
plus per run the workflow data (`wf.set`) and the signals sent to it.

Contract, for every implementation (one contract suite in tests/contract):
- `append` is a compare-and-set on the sequence number: an event is stored only if its
  `seq` is exactly the number of events already stored for that history (the next
  position); otherwise `HistoryConflictError` (another attempt of the same workflow got
  there first, or a position was skipped). Events are never rewritten or deleted.
- `load` returns a history's events in sequence order.
- `append` also records, in the same single store command, that each of the event's
  `ids` (child invocations) belongs to `run` (`run_of`).
- A 'set' event also sets its key (`name`) to its value (`data`) in the run's workflow
  data, in the same store command. `set_data` (the writes of child tasks) replaces one
  key's value; `data` returns every key of a run, the latest write of each winning
  (by time across writers).
- `signal` appends a signal to a run's list; `signals(run, name)` returns the payloads
  of that name in the order they were sent.
- Methods are thread-safe and safe across processes sharing the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from fleet.errors import HistoryConflictError

__all__ = ["KINDS", "Event", "HistoryConflictError", "HistoryStore"]

KINDS = frozenset({"call", "value", "version", "sleep", "signal", "set", "get"})


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded step of a workflow invocation."""

    seq: int
    """Its position in the workflow's execution, from 0."""
    kind: str
    """'call' (child invocations), 'value' (now/uuid4/random/side_effect), 'version',
    'sleep', 'signal', 'set', 'get'."""
    name: str
    """Task name, helper name, version marker, signal name or data key."""
    data: bytes = b""
    """The step's encoded payload (arguments of the calls, the value recorded)."""
    ids: tuple[str, ...] = ()
    """The child invocations of a 'call' step, in call order."""
    at: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown history event kind {self.kind!r}")
        if self.seq < 0:
            raise ValueError(f"history event seq must be >= 0, got {self.seq}")


class HistoryStore(ABC):
    """Where workflow histories, data and signals live; see the module docstring."""

    @abstractmethod
    def load(self, history: str) -> list[Event]:
        """Every event of `history` (a workflow invocation id), in sequence order."""

    @abstractmethod
    def append(self, history: str, run: str, event: Event) -> None:
        """Store `event` at its position (see the module docstring).

        Raises:
            HistoryConflictError: `event.seq` is not the next position.
        """

    @abstractmethod
    def run_of(self, invocation_id: str) -> str | None:
        """The run a recorded child invocation belongs to, or None."""

    @abstractmethod
    def set_data(self, run: str, key: str, value: bytes) -> None:
        """Set one key of a run's workflow data."""

    @abstractmethod
    def data(self, run: str) -> dict[str, bytes]:
        """Every key of a run's workflow data."""

    @abstractmethod
    def signal(self, run: str, name: str, payload: bytes) -> None:
        """Append a signal to a run."""

    @abstractmethod
    def signals(self, run: str, name: str) -> list[bytes]:
        """The payloads of the signals `name` sent to `run`, oldest first."""
