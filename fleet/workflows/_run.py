"""`WorkflowRun`: a handle on a workflow invocation from anywhere (`app.workflow_run(id)`).

Job: read a workflow's data and history, send it signals, wait for its result, cancel it.

Contract: `signal(name, payload)` stores the signal, then releases the workflow if it is
suspended (a compare-and-set: a workflow that is running takes the signal when it next
looks, or is released by the workflows extension as it suspends). `data` is the workflow
data of the run the invocation belongs to, decoded with the app's codec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleet._values import resolve
from fleet.codec import decode_call
from fleet.errors import InvocationNotFoundError, WorkflowError

if TYPE_CHECKING:
    from fleet.app import Fleet
    from fleet.invocation import Invocation
    from fleet.workflows._extension import Workflows
    from fleet.workflows._history import Event


class WorkflowRun:
    """A workflow invocation, by id (see the module docstring)."""

    def __init__(self, app: Fleet, ext: Workflows, invocation_id: str) -> None:
        if not isinstance(invocation_id, str) or not invocation_id:
            raise InvocationNotFoundError(f"workflow_run: an invocation id, got {invocation_id!r}")
        self.app = app
        self.ext = ext
        self.id = invocation_id

    def __repr__(self) -> str:
        return f"<WorkflowRun {self.id}>"

    @property
    def invocation(self) -> Invocation[Any]:
        return self.app.invocation(self.id)

    @property
    def run_id(self) -> str:
        """The run whose data this workflow shares (its own id for a top-level one)."""
        try:
            task = self.invocation.task
        except InvocationNotFoundError:  # inline: a workflow still running has no handle yet
            task = ""
        return self.ext.run_of(self.id, task)

    @property
    def data(self) -> dict[str, Any]:
        """The run's workflow data, decoded."""
        codec = self.app.codec
        return {k: codec.decode(v) for k, v in self.ext.store().data(self.run_id).items()}

    @property
    def history(self) -> list[Event]:
        """The recorded steps, in order."""
        return self.ext.store().load(self.id)

    @property
    def children(self) -> list[str]:
        """Invocation ids of every recorded child call, in order."""
        return [i for event in self.history for i in event.ids]

    def signal(self, name: str, payload: Any = None) -> None:
        """Send the signal `name` (with `payload`) to the workflow."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"signal name must be a non-empty string, got {name!r}")
        self.ext.store().signal(self.id, name, self.app.codec.encode(payload))
        if not self.app.settings.inline:
            self.ext.wake(self.id, f"signal {name!r}")

    def replay(self) -> Any:
        """Run the workflow's body again in this process against its recorded history
        and return its value: checks that the code still replays the history
        (`DivergenceError` if not; `WorkflowError` if it asks for a step beyond it).
        Nothing is submitted or recorded; children's results are read from the store."""
        record = self.app.record(self.id)
        task = self.app.tasks.get(record.task)
        marked = getattr(task.func, "fleet_workflow", None) if task is not None else None
        if marked is None:
            raise WorkflowError(f"{record.task!r} is not a workflow registered in this process")
        func, force = marked
        args, kwargs = decode_call(self.app.codec, resolve(self.app.runtime().state, record.args))
        return self.ext.execute(func, force, tuple(args), dict(kwargs), replay=self.id)

    def result(self, timeout: float | None = None) -> Any:
        return self.invocation.result(timeout)

    def cancel(self) -> bool:
        """Cancel the workflow; its pending children are cancelled with it."""
        return self.app.cancel(self.id)
