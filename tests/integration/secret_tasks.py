"""Tasks of test_file_secrets.py; the app reads its backends from FLEET__* variables."""

from __future__ import annotations

import os

from fleet import Fleet

app = Fleet()


@app.task
def environment() -> dict[str, str]:
    """The environment task code sees."""
    return dict(os.environ)
