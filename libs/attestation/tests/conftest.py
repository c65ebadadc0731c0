"""Shared fixtures for starlock-attestation tests.

Vectors are read in place from ``../shared/vectors`` (beside the repository) or from the folder
named by ``STARLOCK_VECTORS``. Where neither exists the vector tests skip with a clear message,
except under CI (``CI=true``), where a missing folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[3]


def _vectors_dir() -> Path | None:
    env = os.environ.get("STARLOCK_VECTORS")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO_ROOT.parent / "shared" / "vectors")
    for cand in candidates:
        if (cand / "MANIFEST.md").is_file():
            return cand
    return None


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The vectors folder; skips (fails under CI=true) when it is absent."""
    found = _vectors_dir()
    if found is None:
        message = (
            "attestation vectors not found: set STARLOCK_VECTORS or place shared/vectors beside the "
            "repository (see README, 'Tests')"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found
