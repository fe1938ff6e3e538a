"""Which tasks are workflows, and the links to run pages an invocation's page shows.

Job: name the app's workflow tasks (`@app.workflow` makes a `WorkflowTask`) for the
workflow list, and give an invocation's page its links: to its own run page when it is
a workflow, to the run of the workflow that called it when one did.

Contract: reads only the app's task registry and, for a child, its parent's record (one
`StateStore.get`). A workflow the monitor's app does not define is not recognised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleet.state import InvocationRecord, StateStore
from fleet.workflows import WorkflowTask

if TYPE_CHECKING:
    from fleet.app import Fleet


def workflow_names(app: Fleet) -> list[str]:
    """The app's workflow tasks, by name."""
    return sorted(n for n, t in app.tasks.items() if isinstance(t, WorkflowTask))


def links(app: Fleet, state: StateStore, record: InvocationRecord) -> dict[str, str]:
    """`run_page`: `record`'s id if it is a workflow run; `parent_run`: its parent's id
    if a workflow called it ('' for none)."""
    names = workflow_names(app)
    if not names:
        return {"run_page": "", "parent_run": ""}
    parent_run = ""
    if record.parent:
        parents = state.get([record.parent])
        if parents and parents[0].task in names:
            parent_run = record.parent
    return {"run_page": record.id if record.task in names else "", "parent_run": parent_run}
