"""The body of the duplicates benchmark's task, the same for every system measured.

Job: `complete(key)` sleeps `SLEEP` seconds, then appends one line (`key pid time`) to
the completion log named by `BENCH_COMPLETION_LOG` (O_APPEND, one `write`, no buffer:
the line is in the file when the call returns); `read(path)` counts them. A body
"completes" when its line is written; a body killed before that did not complete.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SLEEP = 0.01
LOG_ENV = "BENCH_COMPLETION_LOG"


def complete(key: str) -> str:
    time.sleep(SLEEP)
    line = f"{key} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return key


def read(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Completions by key: (pid, time) of each line written, in file order."""
    found: dict[str, list[tuple[int, float]]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # a line being written has no newline yet: never split here
            found.setdefault(parts[0], []).append((int(parts[1]), float(parts[2])))
    return found
