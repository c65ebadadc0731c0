"""stop_on_signals: a signal that lands while the main thread holds the event's lock still stops it.

Python runs a signal handler in the main thread between two bytecodes, also inside
``Event.wait`` while that thread holds the event's internal lock. A handler that calls
``Event.set()`` there waits for its own thread's lock forever; on Python 3.13 a service polling
``stop.wait(1.0)`` hung on SIGTERM that way about once in a few hundred stops.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import signal, sys
from starlock.atls.signals import stop_on_signals
stop = stop_on_signals()
with stop._cond:  # what Event.wait holds between two of its bytecodes
    signal.raise_signal(signal.{name})  # the handler runs here, in this thread, before this returns
print("stopped" if stop.wait(5) else "not stopped", flush=True)
"""


SIGUSR1_CHILD = """
import signal
from starlock.atls.signals import stop_on_signals
stop = stop_on_signals([signal.SIGUSR1])
for _ in range({count}):  # 100,000 is far more than a pipe holds: the handler never blocks on it
    signal.raise_signal(signal.SIGUSR1)
print(stop.wait({wait}), flush=True)
"""


def _child_output(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout + out.stderr


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_event_lock_is_held_stops_the_process(name: str) -> None:
    assert _child_output(CHILD.format(name=name)) == "stopped\n"


def test_repeated_signals_set_the_event_once_and_do_not_block() -> None:
    assert _child_output(SIGUSR1_CHILD.format(count=100_000, wait=5)) == "True\n"


def test_no_event_before_a_signal() -> None:
    assert _child_output(SIGUSR1_CHILD.format(count=0, wait=0.3)) == "False\n"
