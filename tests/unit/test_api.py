"""The public API is exactly what `fleet.__all__` says."""

import fleet

PUBLIC = {
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
}


def test_all_is_pinned() -> None:
    assert set(fleet.__all__) == PUBLIC
    for name in fleet.__all__:
        assert hasattr(fleet, name), name


def test_errors_share_one_root() -> None:
    for name in fleet.__all__:
        value = getattr(fleet, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, fleet.FleetError), name
