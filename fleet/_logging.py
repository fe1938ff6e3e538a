"""Logging for worker processes: ids on every record, text or JSON lines.

Job: make every log record say which invocation and task it is about. Contract: fleet
never configures logging at import; `setup_logging` is called by the CLI and worker
processes only. `IdsFilter` fills `invocation_id` and `task` from the record's `extra`,
else from the invocation running in the current thread, else '-'; so a task's own
`logging` calls carry the ids too. `JsonFormatter` writes one JSON object per line
(for Kubernetes log collectors).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from fleet import _context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(task)s %(invocation_id)s] %(message)s"


class IdsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "invocation_id"):
            execution = _context.current()
            record.invocation_id = execution.invocation_id if execution else "-"
            if not hasattr(record, "task"):
                record.task = execution.task if execution else "-"
        elif not hasattr(record, "task"):
            record.task = "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "task": getattr(record, "task", "-"),
            "invocation_id": getattr(record, "invocation_id", "-"),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send logs to stderr with ids on every record (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_fleet", False):
            root.setLevel(level)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler._fleet = True  # type: ignore[attr-defined]  # marks our handler
    handler.addFilter(IdsFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # pika logs every refused reconnection attempt at ERROR with a traceback (a flood
    # while RabbitMQ restarts); fleet's broker reports connection trouble itself.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
