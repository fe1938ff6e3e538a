"""Workflow history events as the run page shows them.

Job: turn each recorded `fleet.workflows.Event` into a line a person reads (what the
step did, what it recorded), list the signals a run took, and the signals sent to it
that it has not taken yet.

Contract: pure apart from `signals_waiting` (which reads the store's signals, by the
names the history waits for: a store lists signals by name only). Never raises on odd
data: what cannot be decoded is shown as such. Payloads the workflows runtime packs
itself (deadlines, due times, version numbers, [present, value] pairs) are msgpack;
values from workflow code are encoded with the run's codec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgpack

from fleet.monitor import _render
from fleet.state import InvocationRecord
from fleet.workflows import Event, HistoryStore

SHOWN = 300
"""Characters of a recorded value shown in a history line."""
_BAD = object()


@dataclass(frozen=True, slots=True)
class Child:
    id: str
    task: str
    status: str
    """Its current status, '' when the store has no such invocation (yet)."""


@dataclass(frozen=True, slots=True)
class Step:
    seq: int
    kind: str
    name: str
    at: float
    text: str
    children: list[Child] = field(default_factory=list)


def _unpack(data: bytes) -> object:
    try:
        return msgpack.unpackb(data, raw=False)
    except Exception:
        return _BAD


def _value(data: bytes, codec: str) -> str:
    return _render.cut(_render.decode(data, codec), SHOWN)[0]


def _deadline(value: object) -> str:
    if value is None:
        return "no timeout"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"until {_render.stamp(float(value))}"
    return "<undecodable deadline>"


def _outcome(value: object) -> tuple[bool, bytes] | None:
    """A signal wait's outcome ([got, payload]), None for its start (a deadline)."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], bool):
        payload = value[1] if isinstance(value[1], bytes) else b""
        return value[0], payload
    return None


def describe(event: Event, codec: str, children: Mapping[str, InvocationRecord]) -> Step:
    """`event` as a line of the run's history; `children`: the records of its calls."""
    kind, name = event.kind, event.name
    text = f"<{len(event.data)} bytes: not decoded>"
    kids: list[Child] = []
    if kind == "call":
        kids = [
            Child(i, children[i].task if i in children else name, _status(children, i))
            for i in event.ids
        ]
        calls = _unpack(event.data)
        if isinstance(calls, list) and all(isinstance(c, bytes) for c in calls):
            shown = [_value(c, codec) for c in calls]
            text = f"calls {name}" + (
                shown[0] if len(shown) == 1 else f" x{len(shown)}: " + "; ".join(shown)
            )
            text = _render.cut(text, SHOWN)[0]
    elif kind == "value":
        text = f"{name}() = {_value(event.data, codec)}"
    elif kind == "version":
        number = _unpack(event.data)
        text = f"version marker {name!r}: version {number}" if isinstance(number, int) else text
    elif kind == "sleep":
        due = _unpack(event.data)
        text = f"sleeps {_deadline(due)}" if due is not None else text
    elif kind == "signal":
        unpacked = _unpack(event.data)
        outcome = _outcome(unpacked)
        if outcome is None:
            text = f"waits for signal {name!r}, {_deadline(unpacked)}"
        elif outcome[0]:
            text = f"took signal {name!r}: {_value(outcome[1], codec)}"
        else:
            text = f"gave up waiting for signal {name!r} (timed out)"
    elif kind == "set":
        text = f"sets {name!r} = {_value(event.data, codec)}"
    elif kind == "get":
        pair = _outcome(_unpack(event.data))
        if pair is not None:
            got = _value(pair[1], codec) if pair[0] else "absent"
            text = f"reads {name!r}: {got}"
    return Step(event.seq, kind, name, event.at, _render.hide_secrets(text), kids)


def _status(children: Mapping[str, InvocationRecord], invocation_id: str) -> str:
    found = children.get(invocation_id)
    return found.status.value if found is not None else ""


def signals_taken(events: Sequence[Event], codec: str) -> list[tuple[float, str, str]]:
    """(when, name, payload shown) of each signal the run took, in order."""
    out = []
    for e in events:
        if e.kind != "signal":
            continue
        outcome = _outcome(_unpack(e.data))
        if outcome is not None and outcome[0]:
            shown = _render.hide_secrets(_value(outcome[1], codec))
            out.append((e.at, e.name, shown))
    return out


def signals_waiting(
    store: HistoryStore, history: str, events: Sequence[Event], codec: str
) -> list[tuple[str, str]]:
    """(name, payload shown) of signals sent to `history` and not taken yet, for the
    names its history waits for."""
    taken: dict[str, int] = {}
    for e in events:
        if e.kind == "signal":
            outcome = _outcome(_unpack(e.data))
            got = outcome is not None and outcome[0]
            taken[e.name] = taken.get(e.name, 0) + (1 if got else 0)
    out = []
    for name, count in taken.items():
        for payload in store.signals(history, name)[count:]:
            out.append((name, _render.hide_secrets(_value(payload, codec))))
    return out
