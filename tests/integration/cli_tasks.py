"""Tasks of test_cli_invocations.py; the app reads its backends from FLEET__* variables."""

from __future__ import annotations

from fleet import Fleet

app = Fleet()
calls: dict[str, int] = {}


@app.task
def flaky(key: str) -> str:
    """Fails on its first call for `key`, succeeds afterwards."""
    calls[key] = calls.get(key, 0) + 1
    if calls[key] == 1:
        raise ValueError(f"first call for {key!r} fails")
    return f"{key} ok"
