"""Shutdown on SIGTERM/SIGINT without touching a lock inside the signal handler.

A Python signal handler runs in the main thread between two bytecodes, also while that thread
holds a ``threading.Event``'s internal lock inside ``Event.wait``. A handler that calls
``Event.set()`` then waits for a lock its own thread holds: the process hangs and ignores every
further SIGTERM (the Python documentation warns against locks in handlers). Here the handler only
writes one byte to a pipe; a relay thread reads it and sets the event from ordinary code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType

__all__ = ["stop_on_signals"]


def stop_on_signals(signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    """Install handlers for ``signals`` (main thread only); the returned event is set on the first one.

    Meant to be called once per process: the pipe and the relay thread live as long as it does.
    """
    event = threading.Event()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def handler(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is already pending
            os.write(write_end, b"\0")

    def relay() -> None:
        os.read(read_end, 1)
        event.set()

    threading.Thread(target=relay, name="signal-relay", daemon=True).start()
    for sig in signals:
        signal.signal(sig, handler)
    return event
