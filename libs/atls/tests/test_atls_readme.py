"""The README's Python examples run as written, in order, in one session, and clean up after themselves."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)


def test_readme_python_blocks_run(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.atls")
    blocks = _blocks()
    assert len(blocks) >= 3, "README lost its handshake and gRPC examples"
    threads_before = set(threading.enumerate())
    namespace: dict[str, Any] = {"__name__": "readme"}
    try:
        for block in blocks:  # one namespace: the gRPC client block talks to the server block's `front`
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        front = namespace.get("front")
        if front is not None and os.path.exists(front.directory):  # the example failed before stopping it
            front.stop()
    out = capsys.readouterr().out
    assert "Variant.DUMMY" in out or "dummy" in out  # the handshake example printed what the peer proved
    assert "disk for 127.0.0.1:" in out  # the servicer saw the caller's attested identity
    # the examples stopped their servers: private directories gone, no relay threads left behind
    assert not os.path.exists(namespace["front"].directory)
    assert not os.path.exists(namespace["channel"].directory)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"the examples logged errors: {errors}"
    leftover = [t.name for t in set(threading.enumerate()) - threads_before if t.name.startswith("atls-")]
    assert not leftover, f"relay threads still running after the examples: {leftover}"
