"""Child processes for tests that race several processes against one backend.

Job: start spawned children together and make sure none outlives its test.
Contract: `spawned(target, arglists)` starts one `target(go, *args)` per argument tuple,
where `go` is an event the children may wait on so that they start at once; inside the
`with` block the test sets `go` (or not) and does its part. Leaving the block normally
joins every child within `timeout` seconds and asserts that each exited 0; leaving it
in any way kills the children still alive, by their PIDs.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from typing import Any


@contextmanager
def spawned(
    target: Callable[..., None], arglists: Sequence[tuple[Any, ...]], timeout: float = 90.0
) -> Iterator[Event]:
    """See the module docstring; yields the `go` event."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=target, args=(go, *args)) for args in arglists]
    for proc in procs:
        proc.start()
    try:
        yield go
        for proc in procs:
            proc.join(timeout)
            assert proc.exitcode == 0, f"child {proc.pid} ended with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
