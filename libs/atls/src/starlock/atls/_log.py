"""klog-style verbosity on stdlib logging: ``-v 2`` start and new connections, 4 general, 6 detail."""

from __future__ import annotations

import logging

__all__ = ["V2", "V4", "V6", "level_for_verbosity"]

V2 = logging.INFO
V4 = 15
V6 = logging.DEBUG

logging.addLevelName(V4, "V4")


def level_for_verbosity(verbosity: int) -> int:
    """The stdlib level that shows klog messages up to ``verbosity``."""
    if verbosity >= 6:
        return V6
    if verbosity >= 4:
        return V4
    if verbosity >= 2:
        return V2
    return logging.WARNING
