"""The log format of every Starlock service and command: one JSON object per line.

``{"time": "...Z", "level": ..., "logger": ..., "msg": ..., <fields>}``: a record's structured
``fields`` (``extra={"fields": {...}}``) are merged in; an exception is logged by its type only,
never its message (a message could hold anything). Callers never pass secrets.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["JsonLinesFormatter", "configure"]


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update({k: v for k, v in fields.items() if k not in doc})
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = record.exc_info[0].__name__
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(
    level: int,
    *,
    stream: TextIO | None = None,
    extra_handlers: Iterable[logging.Handler] = (),
    logger: str = "starlock",
) -> logging.Logger:
    """Send ``logger`` (default: every ``starlock`` logger) as JSON lines to ``stream`` (stderr)
    and ``extra_handlers`` at ``level``, replacing handlers a previous call installed."""
    target = logging.getLogger(logger)
    for old in list(target.handlers):
        target.removeHandler(old)
    for handler in (logging.StreamHandler(stream or sys.stderr), *extra_handlers):
        handler.setFormatter(JsonLinesFormatter())
        target.addHandler(handler)
    target.setLevel(level)
    target.propagate = False
    return target
