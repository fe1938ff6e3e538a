"""Errors of workflows (defined in `fleet.errors`, where every fleet error lives)."""

from __future__ import annotations

from fleet.errors import DivergenceError, HistoryConflictError, SignalTimeoutError, WorkflowError

__all__ = ["DivergenceError", "HistoryConflictError", "SignalTimeoutError", "WorkflowError"]
