"""JSON-lines logging with klog verbosity (``-v N``: 2 start and requests, 4 general, 6 detail).

The same shell as the join service's (copied: services do not import each other's internals).

Records carry structured ``fields``; exceptions are logged by type only (a message could hold
anything). Nothing secret is ever passed to a logger here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["configure_logging"]


class JsonFormatter(logging.Formatter):
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


def configure_logging(verbosity: int, stream: TextIO | None = None) -> None:
    """JSON lines on stderr for the ``starlock`` loggers; INFO from -v 2, DEBUG from -v 6."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    level = logging.DEBUG if verbosity >= 6 else logging.INFO if verbosity >= 2 else logging.WARNING
    for name in ("starlock",):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
