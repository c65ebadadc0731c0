"""Line coverage of one module for the survey run; copied as ``sitecustomize.py`` (survey only).

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``, so every interpreter the tests
start (the pytest process and, e.g., key service subprocesses) records which lines of the file
named by ``STARLOCK_MUTATION_TRACE`` it executes. Each line is appended to
``$STARLOCK_MUTATION_LINES.<pid>`` when first seen, so a process that is killed loses nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from types import FrameType
from typing import Any

_TARGET = os.environ.get("STARLOCK_MUTATION_TRACE", "")
_OUT = os.environ.get("STARLOCK_MUTATION_LINES", "")
_seen: set[int] = set()


def _record(line: int) -> None:
    if line not in _seen:
        _seen.add(line)
        with open(f"{_OUT}.{os.getpid()}", "a", encoding="ascii") as fh:
            fh.write(f"{line}\n")


def _local(frame: FrameType, event: str, _arg: Any) -> Any:
    if event == "line":
        _record(frame.f_lineno)
    return _local


def _global(frame: FrameType, _event: str, _arg: Any) -> Any:
    if frame.f_code.co_filename == _TARGET:
        _record(frame.f_lineno)
        return _local
    return None


if _TARGET and _OUT:
    sys.settrace(_global)
    threading.settrace(_global)
