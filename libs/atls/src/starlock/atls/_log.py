"""klog-style verbosity on stdlib logging: ``-v 2`` start and new connections, 4 general, 6 detail.

:class:`LogLimiter` bounds what a flood can write: a burst of lines per interval, then one line
saying how many were left out (an attacker must not turn each refused connection into a log line).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["V2", "V4", "V6", "LogLimiter", "level_for_verbosity"]

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


class LogLimiter:
    """At most ``burst`` lines per ``interval`` seconds on ``logger``; the rest are counted.

    The first line after a quiet spell says how many were suppressed before it, so nothing is
    lost silently; :meth:`log` returns whether the line was written.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._written = 0
        self._suppressed = 0

    def log(self, level: int, message: str, *args: object) -> bool:
        if not self._logger.isEnabledFor(level):
            return False
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self._interval:
                self._window_start, self._written = now, 0
            if self._written >= self._burst:
                self._suppressed += 1
                return False
            self._written += 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message += " (%d similar messages suppressed before this one)"
            args = (*args, suppressed)
        self._logger.log(level, message, *args, stacklevel=2)
        return True
