"""The exception hierarchy of fleet.

Every error fleet raises on its own account derives from `FleetError`, one branch per
component, so callers can catch as broadly or as narrowly as they need. A task's own
exception is never wrapped when it can be rebuilt on the caller's side: `.result()`
raises the task's exception type with the remote traceback attached (see
`fleet.invocation`). `RemoteError` stands in only when that type cannot be imported or
constructed here.
"""

from __future__ import annotations


class FleetError(Exception):
    """Root of every error raised by fleet itself."""


class ConfigError(FleetError):
    """A setting is unknown, has the wrong type, or cannot be read."""


class SerializationError(FleetError):
    """A value cannot be encoded or decoded by the configured codec."""


class TaskDefinitionError(FleetError):
    """A decorated function or its options cannot be used as a task."""


class UnknownTaskError(FleetError):
    """A message names a task that this process does not know."""


class BrokerError(FleetError):
    """The message broker failed or refused an operation."""


class PublishError(BrokerError):
    """A publish was not confirmed by the broker; the message may not have been sent."""


class QueueMismatchError(BrokerError):
    """A queue exists with arguments other than the ones configured."""


class LinkError(BrokerError):
    """The connection to the broker (RabbitMQ) could not be opened, or was lost."""


class ChannelError(BrokerError):
    """The broker closed a channel (the reply code says why)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"RabbitMQ refused: {code} {text}")
        self.code = code
        self.text = text


class StateError(FleetError):
    """The state store failed or refused an operation."""


class DuplicateInvocationError(StateError):
    """Registering refused: an invocation id is already registered (nothing was written)."""


class InvalidTransitionError(StateError):
    """A status change that the state machine does not allow."""


class InvocationNotFoundError(StateError):
    """No invocation with the given id exists in the state store."""


class RegistrationUnknownError(StateError):
    """Registering invocations failed and they may have been written anyway.

    Raised when the state store failed while registering (for example the connection
    was lost after the insert) and fleet could not make sure that what it may have
    written will never run. The invocations may still run.

    Attributes:
        invocation_ids: the invocations that may still run.
    """

    def __init__(self, message: str, invocation_ids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.invocation_ids = invocation_ids


class TaskError(FleetError):
    """Base of errors about one invocation's outcome."""


class RemoteError(TaskError):
    """A task failed with an exception type that cannot be rebuilt in this process.

    Attributes:
        type_name: the dotted name of the original exception type.
        remote_traceback: the traceback text captured on the worker.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.remote_traceback = remote_traceback


class ResultTimeoutError(TaskError, TimeoutError):
    """Waiting for an invocation's result took longer than the timeout.

    Also a built-in `TimeoutError`. The message names the first invocation that had not
    finished, its status, its queue and how many consumers that queue has.

    Attributes:
        invocation_ids: every invocation that had not finished.
        invocation_id: the first of them.
        status: its status ("unknown" when it could not be read).
        queue: its queue ("unknown" when it could not be read).
        consumers: that queue's consumer count, or None when the broker cannot tell.
    """

    def __init__(
        self,
        message: str,
        invocation_ids: tuple[str, ...] = (),
        status: str = "unknown",
        queue: str = "unknown",
        consumers: int | None = None,
    ) -> None:
        super().__init__(message)
        self.invocation_ids = invocation_ids
        self.invocation_id = invocation_ids[0] if invocation_ids else ""
        self.status = status
        self.queue = queue
        self.consumers = consumers


class CancelledError(TaskError):
    """The invocation was cancelled before it produced a result."""


class WaitCycleError(TaskError):
    """Invocations wait on each other in a cycle and can never finish."""


class SoftTimeLimitExceeded(TaskError):
    """Raised inside a task that ran past its soft time limit."""


class HardTimeLimitExceeded(TaskError):
    """The invocation was stopped after running past its hard time limit."""


class WorkerLostError(TaskError):
    """The worker running the invocation died and retries are exhausted."""


class ExtensionError(FleetError):
    """An extension refused an operation (raised by a before-hook), or failed."""


class TriggerNotFoundError(FleetError):
    """No trigger has the id asked for (`app.triggers.get`, `fleet triggers show ID`)."""


class WorkflowError(FleetError):
    """Misuse of the workflow API (a helper called outside a workflow, bad arguments)."""


class DivergenceError(WorkflowError):
    """A replay made a different call than its history records at the same position:
    the workflow's code changed under a running workflow (wrap the change in
    `wf.version`) or the workflow is not deterministic."""


class SignalTimeoutError(WorkflowError, TimeoutError):
    """`wf.wait_signal` reached its timeout before the signal came."""


class HistoryConflictError(StateError):
    """A workflow history position is already taken (another attempt recorded it)."""
