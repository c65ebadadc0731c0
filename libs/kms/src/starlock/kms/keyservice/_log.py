"""JSON-lines logging with klog-style verbosity (``-v N``: 2 start/new request, 4 general, 6 low-level).

A record carries its verbosity in ``v`` (errors and warnings: 0) and structured ``fields``;
a handler filter drops records whose ``v`` exceeds the configured level. Callers never pass
secrets; exceptions are logged by type (and, for KmsError, their secret-free message) only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["LOGGER_NAME", "configure_logging", "vlog"]

LOGGER_NAME = "starlock.keyservice"
# Highest verbosity configured; vlog skips building records above it (cheap on the hot path).
_max_verbosity = [0]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "v": getattr(record, "v", 0),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update({k: v for k, v in fields.items() if k not in doc})
        if record.exc_info and record.exc_info[0] is not None:
            # Type only: an arbitrary exception message could carry anything.
            doc["exception"] = record.exc_info[0].__name__
        return json.dumps(doc, default=str, ensure_ascii=False)


class _VerbosityFilter(logging.Filter):
    def __init__(self, verbosity: int) -> None:
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        v = getattr(record, "v", 0)
        return record.levelno >= logging.WARNING or (isinstance(v, int) and v <= self.verbosity)


def configure_logging(verbosity: int, stream: TextIO | None = None) -> logging.Logger:
    """Send the key service's logger to ``stream`` (stderr) as JSON lines at ``verbosity``."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler.addFilter(_VerbosityFilter(verbosity))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    _max_verbosity[0] = verbosity
    return logger


def vlog(logger: logging.Logger, v: int, msg: str, **fields: object) -> None:
    """Log ``msg`` at klog verbosity ``v`` with structured ``fields`` (never a secret)."""
    if v <= _max_verbosity[0] and logger.isEnabledFor(logging.INFO):
        logger.info(msg, extra={"v": v, "fields": fields})
