"""What tasks and invocation handles need from their app: a small producer runtime.

Job: let `fleet.task` and `fleet.invocation` depend on an interface instead of on the
engine, so that imports point one way: `app` -> `aio` -> `task` -> `invocation` ->
`_client`. `fleet.app.Fleet` implements it (submitting in `fleet._submit`, inline in
`fleet._inline`, asyncio in `fleet.aio`).

Contract: the methods below are all a task or a handle calls on its app; each says what
it promises. Names of tasks and invocations appear only as strings and records here.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: these modules import this one
    from fleet._envelope import Outcome
    from fleet.codec import Codec
    from fleet.config import Settings
    from fleet.extensions import Dispatcher
    from fleet.invocation import Invocation
    from fleet.state import InvocationRecord
    from fleet.task import Task


class Client(ABC):
    """The runtime behind tasks and invocation handles (`Fleet` is the one in use)."""

    settings: Settings
    codec: Codec
    dispatcher: Dispatcher
    """The hooks of the app's extensions (`fleet.extensions`)."""

    @abstractmethod
    def submit(
        self,
        task: Task[Any, Any],
        bounds: Sequence[inspect.BoundArguments],
        due: float | None = None,
        ids: Sequence[str] | None = None,
        keys: Sequence[str] = (),
    ) -> list[Invocation[Any]]:
        """Register and publish one invocation per bound call (run it, inline), under
        the given invocation `ids` if any (one per call; an id already registered is
        refused), with the idempotency `keys` if any (one per call, '' for none). A
        call an extension reuses gets a handle on the existing invocation."""

    @abstractmethod
    async def asubmit(
        self,
        task: Task[Any, Any],
        bounds: Sequence[inspect.BoundArguments],
        keys: Sequence[str] = (),
    ) -> list[Invocation[Any]]:
        """`submit` from async code, without blocking the event loop."""

    @abstractmethod
    def outcomes(self, ids: Sequence[str], timeout: float | None = None) -> dict[str, Outcome]:
        """Block until every id is final; `ResultTimeoutError` after `timeout`."""

    @abstractmethod
    def outcomes_any(self, ids: Sequence[str], timeout: float | None = None) -> list[Outcome]:
        """Block until at least one id is final; return the final ones."""

    @abstractmethod
    def unwrap(self, task: str, outcome: Outcome) -> Any:
        """The value of a finished invocation, or raise its error."""

    @abstractmethod
    async def aresults(
        self, invocations: Sequence[Invocation[Any]], timeout: float | None = None
    ) -> list[Any]:
        """Every value, in order, awaited; the first failure raises."""

    @abstractmethod
    def record(self, invocation_id: str) -> InvocationRecord:
        """The stored record of an invocation; `InvocationNotFoundError` if none."""

    @abstractmethod
    def cancel(self, invocation_id: str, by: str = "cancel") -> bool:
        """Cancel an invocation; False if it had already finished."""

    @abstractmethod
    def forget(self, invocation_id: str) -> None:
        """Drop what is held for a handle that is gone (its outcome, if any)."""
