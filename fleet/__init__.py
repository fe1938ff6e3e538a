"""fleet: decorate a function, run it on a fleet of workers, keep the call site.

    from fleet import Fleet

    app = Fleet()

    @app.direct_task
    def report(period: str) -> dict: ...

The public API is exactly `__all__` (pinned by a test).
"""

from fleet.app import Fleet
from fleet.config import Settings
from fleet.errors import (
    BrokerError,
    CancelledError,
    ConfigError,
    FleetError,
    HardTimeLimitExceeded,
    InvalidTransitionError,
    PublishError,
    RemoteError,
    SerializationError,
    SoftTimeLimitExceeded,
    StateError,
    TaskDefinitionError,
    TaskError,
    WaitCycleError,
    WorkerLostError,
)
from fleet.invocation import Group, Invocation
from fleet.status import Status
from fleet.task import DirectTask, Task

__version__ = "0.1.0"

__all__ = [
    "BrokerError",
    "CancelledError",
    "ConfigError",
    "DirectTask",
    "Fleet",
    "FleetError",
    "Group",
    "HardTimeLimitExceeded",
    "InvalidTransitionError",
    "Invocation",
    "PublishError",
    "RemoteError",
    "SerializationError",
    "Settings",
    "SoftTimeLimitExceeded",
    "StateError",
    "Status",
    "Task",
    "TaskDefinitionError",
    "TaskError",
    "WaitCycleError",
    "WorkerLostError",
    "__version__",
]
