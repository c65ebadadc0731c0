"""Requests in flight, for a graceful stop: refuse new ones, wait (bounded) for the rest."""

from __future__ import annotations

import threading
import time

__all__ = ["Gate"]


class Gate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False

    def enter(self) -> bool:
        """Count a new request in; False once :meth:`drain` has begun (the caller refuses it)."""
        with self._cond:
            if self._closed:
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    def drain(self, grace: float) -> bool:
        """Refuse new requests and wait up to ``grace`` seconds for those in flight; True if none left."""
        deadline = time.monotonic() + grace
        with self._cond:
            self._closed = True
            while self._in_flight and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            return self._in_flight == 0
