"""The task of `bench/mongo_e2e.py` and `tests/integration/test_mongo_commands.py`.

Job: one app whose backends come from the environment (`FLEET__BROKER_URL`,
`FLEET__STATE_URL`), imported by the producer and by the `fleet worker` processes.
Contract: importing it in a process where `FLEET_TEST_MONGO_COMMANDS` names a directory
counts that process's MongoDB commands (`fleet.testing.mongo_commands`), before any
client exists; `double(x)` returns `2 * x`.
"""

from __future__ import annotations

from fleet import Fleet
from fleet.testing.mongo_commands import install_from_env

install_from_env()
app = Fleet()


@app.task
def double(x: int) -> int:
    return 2 * x
