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


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_event_lock_is_held_stops_the_process(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(name=name)], capture_output=True, text=True, timeout=20, check=True
    )
    assert out.stdout == "stopped\n", out.stderr


def test_repeated_signals_set_the_event_once_and_do_not_block() -> None:
    code = (
        "import signal\n"
        "from starlock.atls.signals import stop_on_signals\n"
        "stop = stop_on_signals([signal.SIGUSR1])\n"
        "for _ in range(100_000):\n"  # far more than a pipe holds: the handler never blocks on a full pipe
        "    signal.raise_signal(signal.SIGUSR1)\n"
        "print(stop.wait(5), flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == "True\n", out.stderr


def test_no_event_before_a_signal() -> None:
    code = (
        "import signal\n"
        "from starlock.atls.signals import stop_on_signals\n"
        "stop = stop_on_signals([signal.SIGUSR1])\n"
        "print(stop.wait(0.3), flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout == "False\n", out.stderr
