"""JSON-lines logging with klog verbosity (``-v N``: 2 start and requests, 4 general, 6 detail).

Records carry structured ``fields``; exceptions are logged by type only (a message could hold
anything). Nothing secret is ever passed to a logger here.
"""

from __future__ import annotations

import logging
from typing import TextIO

from starlock.atls.jsonlog import JsonLinesFormatter, configure

__all__ = ["JsonLinesFormatter", "configure_logging"]


def configure_logging(verbosity: int, stream: TextIO | None = None) -> None:
    """JSON lines on stderr for the ``starlock`` loggers; INFO from -v 2, DEBUG from -v 6."""
    level = logging.DEBUG if verbosity >= 6 else logging.INFO if verbosity >= 2 else logging.WARNING
    configure(level, stream=stream)
    # the audit trail is always written
    logging.getLogger("starlock.joinservice.audit").setLevel(logging.INFO)
