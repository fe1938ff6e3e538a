"""Tasks for the RabbitMQ end-to-end tests, imported by the test and by the real
`fleet worker` processes it starts.

The app reads its backends from FLEET__* variables, which each test sets (then reloads
this module) before starting workers with the same environment. Every execution of
`double` appends its invocation id to `$FLEET_TEST_EXEC_DIR/<pid>.log`, so a test can
count how often each invocation actually ran.
"""

from __future__ import annotations

import os

from fleet import Fleet

app = Fleet()


@app.task
def double(x: int) -> int:
    invocation = app.current_invocation()
    folder = os.environ.get("FLEET_TEST_EXEC_DIR")
    if folder and invocation is not None:
        with open(os.path.join(folder, f"{os.getpid()}.log"), "a", encoding="ascii") as log:
            log.write(invocation.id + "\n")
    return 2 * x
