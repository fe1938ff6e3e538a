"""The public API is exactly what `fleet.__all__` says."""

import importlib
import inspect
import pkgutil

import fleet

PUBLIC = {
    "ArgumentEncodingError",
    "BrokerError",
    "CancelledError",
    "ChannelError",
    "ConfigError",
    "ExtensionError",
    "DirectTask",
    "DivergenceError",
    "DuplicateInvocationError",
    "Fleet",
    "FleetError",
    "HistoryConflictError",
    "Group",
    "HardTimeLimitExceeded",
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
    "SignalTimeoutError",
    "Settings",
    "SoftTimeLimitExceeded",
    "StateError",
    "Status",
    "Task",
    "TaskDefinitionError",
    "TaskError",
    "TriggerNotFoundError",
    "Trigger",
    "UnknownTaskError",
    "WaitCycleError",
    "WorkerLostError",
    "WorkflowError",
    "__version__",
}

INTERNAL_EXCEPTIONS = {
    # Raised and caught inside the codec, which turns them into SerializationError.
    "fleet._codec_types.Undecodable",
    "fleet._codec_types.Unencodable",
    # Unwinds a worker thread whose invocation is no longer its own; never leaves it.
    "fleet.worker.executor.Abandoned",
    # Ends a workflow's attempt inside the worker (durable sleep, signal wait); never leaves it.
    "fleet._context.Suspend",
    # A monitor page's subject is missing: caught by the monitor, shown as a 404 page.
    "fleet.monitor._pages.Missing",
    # The test fixtures' own error (fleet.testing starts services for tests).
    "fleet.testing._procs.ServiceError",
    # A triggered call that cannot be built: recorded in the firing, never raised to users.
    "fleet.triggers._conditions.DeriveError",
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


def test_every_exception_class_is_importable_from_fleet() -> None:
    defined: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(fleet.__path__, "fleet."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed here
            continue
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
            ):
                defined[f"{info.name}.{name}"] = value
    exported = {getattr(fleet, name) for name in fleet.__all__}
    missing = {
        path
        for path, cls in defined.items()
        if path not in INTERNAL_EXCEPTIONS and cls not in exported
    }
    assert not missing, f"exception classes not importable from fleet: {sorted(missing)}"


def test_result_timeout_is_a_builtin_timeout() -> None:
    assert issubclass(fleet.ResultTimeoutError, TimeoutError)
    assert issubclass(fleet.ResultTimeoutError, fleet.FleetError)
