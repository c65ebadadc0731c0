"""JSON-lines logging for ``starlock-bootstrapper``: stderr (journald under systemd) and, when
asked, a file whose content the init server streams back on an Init failure.

Records carry structured ``fields``; exceptions are logged by type only. Nothing secret is ever
passed to a logger in this package (a test runs a whole init and join and greps the logs).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["configure_logging"]


class JsonLines(logging.Formatter):
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


def configure_logging(verbose: bool, log_file: Path | None) -> None:
    """INFO (DEBUG with ``-v``) for every ``starlock`` logger, to stderr and ``log_file``."""
    logger = logging.getLogger("starlock")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        log_file.chmod(0o600)
    for handler in handlers:
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
