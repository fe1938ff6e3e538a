"""What the monitor's templates show: values decoded and cut, secrets hidden, charts drawn.

Job: turn store data into safe display data: arguments and results decoded (never with
pickle: decoding it would run code from the store), cut to `SHOWN` characters with the
full text one link away; any URL credentials in free text (errors, tracebacks, notes,
pasted logs) replaced by `***`; the throughput chart and the timeline bars as
coordinates the templates draw as inline SVG.

Contract: every function is pure (no I/O) and never raises on odd input: what cannot
be decoded is shown as "<N bytes, codec C: why>".
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup, escape

from fleet._urls import redact
from fleet.monitor._reader import Span
from fleet.status import Status

SHOWN = 2000
"""Characters of an argument or result shown before the 'show all' link."""

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_SECRET_PAIR = re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key)=([^\s&'\"]+)")
IDS = re.compile(r"\b[0-9a-f]{32}\b")
"""Invocation ids in text (`fleet._prepare.new_id`: 32 hex digits)."""


def hide_secrets(text: str) -> str:
    """`text` with URL credentials and `password=...`-style values replaced by ***."""
    text = _URL.sub(lambda m: redact(m.group(0)), text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}=***", text)


def id_links(text: str) -> Markup:
    """`text` escaped, secrets hidden, each invocation id in it a link to its page."""
    safe = str(escape(hide_secrets(text)))
    return Markup(IDS.sub(lambda m: f'<a class="id" href="/invocations/{m[0]}">{m[0]}</a>', safe))


def decode(data: bytes | None, codec: str) -> str:
    """A readable form of stored bytes (arguments or result); see the module docstring."""
    from fleet.codec import get_codec
    from fleet.state import blob_key

    if data is None:
        return "-"
    key = blob_key(data)
    if key is not None:
        return f"<large value kept as blob {key}>"
    if codec not in ("msgpack", "json"):
        return f"<{len(data)} bytes, codec {codec}: not decoded by the monitor>"
    try:
        value = get_codec(codec).decode(bytes(data))
    except Exception as exc:
        return f"<{len(data)} bytes, codec {codec}: {type(exc).__name__}>"
    return hide_secrets(_show(value))


def _show(value: object) -> str:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict):
        args, kwargs = value  # an encoded call: [args, kwargs]
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return "(" + ", ".join(parts) + ")"
    return repr(value)


def cut(text: str, limit: int = SHOWN) -> tuple[str, bool]:
    """(shown part, whether it was cut)."""
    return (text, False) if len(text) <= limit else (text[:limit] + " …", True)


def age(at: float, now: float | None = None) -> str:
    seconds = max(0.0, (time.time() if now is None else now) - at)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def stamp(at: float | None) -> str:
    if not at:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str
    """CSS class: ok, failed (chart) or a status name (timeline)."""
    title: str
    link: str = ""


def chart(
    buckets: dict[int, tuple[int, int]], count: int, width: float, height: float
) -> list[Bar]:
    """Stacked bars (succeeded below, failed above) for `count` buckets."""
    top = max([ok + bad for ok, bad in buckets.values()] or [1]) or 1
    step = width / count
    bars: list[Bar] = []
    for i in range(count):
        ok, bad = buckets.get(i, (0, 0))
        h_ok, h_bad = height * ok / top, height * bad / top
        title = f"{ok} succeeded, {bad} failed"
        bars.append(Bar(i * step + 1, height - h_ok, step - 2, h_ok, "ok", title))
        bars.append(Bar(i * step + 1, height - h_ok - h_bad, step - 2, h_bad, "failed", title))
    return bars


@dataclass(frozen=True, slots=True)
class Lane:
    runner: str
    bars: list[Bar]


def lanes(spans: Iterable[Span], start: float, end: float, width: float) -> list[Lane]:
    """Timeline bars per runner: for each invocation the time it waited (PENDING, in the
    lane of the runner that then took it) and each run (RUNNING/PAUSED, in its runner's
    lane), clipped to [start, end]."""
    scale = width / max(end - start, 1e-9)
    found: dict[str, list[Bar]] = {}
    for span in spans:
        for seg_start, seg_end, status, runner in segments(span, end):
            lo, hi = max(seg_start, start), min(seg_end, end)
            if hi <= lo:
                continue
            title = f"{span.task} {span.id} {status.value} {hi - lo:.3f}s"
            x, w = (lo - start) * scale, max((hi - lo) * scale, 1.0)
            bar = Bar(x, 0, w, 0, status.value, title, span.id)
            found.setdefault(runner or "(not taken)", []).append(bar)
    return [Lane(runner, found[runner]) for runner in sorted(found)]


def segments(span: Span, end: float) -> list[tuple[float, float, Status, str]]:
    """(from, to, status, runner) for the waiting and running stretches of `span`."""
    out: list[tuple[float, float, Status, str]] = []
    entries = list(span.history)
    for i, h in enumerate(entries):
        until = entries[i + 1].at if i + 1 < len(entries) else end
        if h.status in (Status.PENDING, Status.RETRY):
            taker = next((x.owner for x in entries[i + 1 :] if x.status is Status.RUNNING), "")
            out.append((h.at, until, Status.PENDING, taker))
        elif h.status in (Status.RUNNING, Status.PAUSED):
            out.append((h.at, until, h.status, h.owner))
    return out
