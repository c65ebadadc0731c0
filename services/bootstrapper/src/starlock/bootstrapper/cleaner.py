"""The cleaner (spec §5.8): whoever wins the node lock calls :meth:`Cleaner.clean`, which stops
every registered stopper (the init server, the join client) once, concurrently."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Cleaner"]

_log = logging.getLogger("starlock.bootstrapper")


class Cleaner:
    def __init__(self) -> None:
        self._stoppers: list[Callable[[], None]] = []
        self._signal = threading.Event()
        self._done = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    def register(self, stop: Callable[[], None]) -> None:
        with self._lock:
            self._stoppers.append(stop)

    def start(self) -> Cleaner:
        with self._lock:
            if self._started:
                return self
            self._started = True
        threading.Thread(target=self._run, name="cleaner", daemon=True).start()
        return self

    def clean(self) -> None:
        """Non-blocking and idempotent."""
        self._signal.set()

    def _run(self) -> None:
        self._signal.wait()
        with self._lock:
            stoppers = list(self._stoppers)
        threads = [threading.Thread(target=self._stop, args=(s,), daemon=True) for s in stoppers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._done.set()

    @staticmethod
    def _stop(stop: Callable[[], None]) -> None:
        try:
            stop()
        except Exception:
            _log.exception("a stopper failed")

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)
