"""fleet: decorate a function, run it on a fleet of workers, keep the call site.

    from fleet import Fleet

    app = Fleet()

    @app.direct_task
    def report(period: str) -> dict: ...

The public API is exactly `__all__` (pinned by a test); every exception fleet raises is
importable from here.
"""

from fleet.app import Fleet
from fleet.codec import ArgumentEncodingError
from fleet.config import Settings
from fleet.errors import (
    BrokerError,
    CancelledError,
    ChannelError,
    ConfigError,
    DivergenceError,
    DuplicateInvocationError,
    ExtensionError,
    FleetError,
    HardTimeLimitExceeded,
    HistoryConflictError,
    InvalidTransitionError,
    InvocationNotFoundError,
    LinkError,
    PublishError,
    QueueMismatchError,
    RegistrationUnknownError,
    RemoteError,
    ResultTimeoutError,
    SerializationError,
    SignalTimeoutError,
    SoftTimeLimitExceeded,
    StateError,
    TaskDefinitionError,
    TaskError,
    TriggerNotFoundError,
    UnknownTaskError,
    WaitCycleError,
    WorkerLostError,
    WorkflowError,
)
from fleet.invocation import Group, Invocation
from fleet.status import Status
from fleet.task import DirectTask, Task
from fleet.triggers import Trigger

__version__ = "0.1.0"

__all__ = [
    "ArgumentEncodingError",
    "BrokerError",
    "CancelledError",
    "ChannelError",
    "ConfigError",
    "DirectTask",
    "DivergenceError",
    "DuplicateInvocationError",
    "ExtensionError",
    "Fleet",
    "FleetError",
    "Group",
    "HardTimeLimitExceeded",
    "HistoryConflictError",
    "InvalidTransitionError",
    "Invocation",
    "InvocationNotFoundError",
    "LinkError",
    "PublishError",
    "QueueMismatchError",
    "RegistrationUnknownError",
    "RemoteError",
    "ResultTimeoutError",
    "SerializationError",
    "Settings",
    "SignalTimeoutError",
    "SoftTimeLimitExceeded",
    "StateError",
    "Status",
    "Task",
    "TaskDefinitionError",
    "TaskError",
    "Trigger",
    "TriggerNotFoundError",
    "UnknownTaskError",
    "WaitCycleError",
    "WorkerLostError",
    "WorkflowError",
    "__version__",
]
