"""What the verification benchmarks share: finding the vectors and timing a call (no Starlock
service needed, so they also run in a library's own environment)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path


def vectors(required: str, benchmark: str) -> Path:
    """``$STARLOCK_VECTORS`` or ``../shared/vectors`` beside the repository, holding ``required``."""
    env = os.environ.get("STARLOCK_VECTORS")
    for cand in [Path(env)] if env else [Path(__file__).resolve().parents[2] / "shared" / "vectors"]:
        if (cand / required).is_file():
            return cand
    sys.exit(f"{benchmark}: vectors not found; set STARLOCK_VECTORS or place shared/vectors beside the repo")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (in batches of 10)."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            fn()
        count += 10
    return count / elapsed
