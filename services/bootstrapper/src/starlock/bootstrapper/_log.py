"""JSON-lines logging for ``starlock-bootstrapper``: stderr (journald under systemd) and, when
asked, a file whose content the init server streams back on an Init failure.

Records carry structured ``fields``; exceptions are logged by type only. Nothing secret is ever
passed to a logger in this package (a test runs a whole init and join and greps the logs).
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlock.atls.jsonlog import configure

__all__ = ["configure_logging"]


def configure_logging(verbose: bool, log_file: Path | None) -> None:
    """INFO (DEBUG with ``-v``) for every ``starlock`` logger, to stderr and ``log_file``."""
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        log_file.chmod(0o600)
    configure(logging.DEBUG if verbose else logging.INFO, extra_handlers=handlers)
