"""The replay engine: a workflow's steps matched against its recorded history.

Job: hand out positions in the order the workflow's code asks for steps; at a recorded
position return the recorded event (checked against what the code asks now), beyond the
history record a new event with compare-and-set (`HistoryStore.append`).

Contract:
- `step(kind, name, data)` returns `(event, replayed)`. Replayed: the recorded event at
  this position, whose kind and name (and, for child calls, arguments) must equal the
  request, else `DivergenceError` naming the position and both steps. New: the caller
  acts (submits, draws a value), then `record`s the event at that position.
- `version(marker, current)`: at a recorded marker of that name, its recorded value; in
  recorded history without that marker (old code never took a marker here), 0 and no
  position is used; beyond the history, `current` is recorded and returned.
- `record` raises `HistoryConflictError` if another attempt recorded the position
  first: this attempt is a zombie and must stop.
- Pure apart from the store: no clock, no codec; payloads are opaque bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fleet.workflows._errors import DivergenceError, WorkflowError
from fleet.workflows._history import Event, HistoryStore


def describe(kind: str, name: str, detail: str = "") -> str:
    """A step as an error message names it: `task(args)` for a call, else its kind."""
    if kind == "call":
        return f"{name}({detail})"
    return f"{kind} {name!r}"


class Replayer:
    """One attempt's walk through a workflow history (see the module docstring)."""

    def __init__(
        self,
        store: HistoryStore,
        history: str,
        run: str,
        events: list[Event] | None = None,
        show: Callable[[Event], str] | None = None,
        clock: Callable[[], float] = time.time,
        strict: bool = False,
    ) -> None:
        self.store = store
        self.history = history
        self.run = run
        self.events = store.load(history) if events is None else events
        self.pos = 0
        self.show: Callable[[Event], str] = show or (lambda e: "")
        self.clock = clock
        self.appended = 0
        self.strict = strict
        """Replay only: a step beyond the history raises `WorkflowError`."""

    @property
    def replaying(self) -> bool:
        """Whether the next position is a recorded one."""
        return self.pos < len(self.events)

    def step(self, kind: str, name: str, data: bytes = b"") -> tuple[Event, bool]:
        """The recorded event at the next position (checked), or a draft to record."""
        if self.pos < len(self.events):
            recorded = self.events[self.pos]
            asked = Event(self.pos, kind, name, data)
            same = recorded.kind == kind and recorded.name == name
            if same and kind == "call":
                same = recorded.data == data
            if not same:
                raise DivergenceError(
                    f"workflow history {self.history} diverged at position {self.pos}: the "
                    f"history records {self._describe(recorded)}, the code now makes "
                    f"{self._describe(asked)}. The workflow's code changed under a running "
                    "workflow (wrap the change in wf.version(...)) or is not deterministic"
                )
            self.pos += 1
            return recorded, True
        if self.strict:
            raise WorkflowError(
                f"replaying workflow history {self.history}: the code asks for a step beyond "
                f"the {len(self.events)} recorded ({describe(kind, name)} at position {self.pos})"
            )
        return Event(self.pos, kind, name, data), False

    def record(self, draft: Event) -> Event:
        """Append `draft` (from `step`, completed with ids/data) at its position."""
        if draft.seq != self.pos:
            raise ValueError(f"draft for position {draft.seq} recorded at {self.pos}")
        event = Event(draft.seq, draft.kind, draft.name, draft.data, draft.ids, self.clock())
        self.store.append(self.history, self.run, event)
        self.events.append(event)
        self.pos += 1
        self.appended += 1
        return event

    def version(self, marker: str, current: int, encode: Callable[[int], bytes]) -> bytes | None:
        """See the module docstring: the recorded marker's data, None for 'old code'
        (no marker here), or the newly recorded data of `current`."""
        if self.pos < len(self.events):
            recorded = self.events[self.pos]
            if recorded.kind == "version" and recorded.name == marker:
                self.pos += 1
                return recorded.data
            return None
        if self.strict:
            return None
        return self.record(Event(self.pos, "version", marker, encode(current))).data

    def _describe(self, event: Event) -> str:
        return describe(event.kind, event.name, self.show(event))
