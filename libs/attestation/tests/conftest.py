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


# --- swtpm fixtures ------------------------------------------------------------------------
# A started software TPM per test (function scope: every test boots a fresh TPM). Where swtpm
# (or tpm2-pytss, for tests that ask for it) is missing the tests skip with a clear message,
# except under CI (CI=true), where that is a failure.

from collections.abc import Callable, Iterator  # noqa: E402 - fixtures appended to this module
from typing import Any  # noqa: E402

from starlock.attestation.swtpm import Swtpm, SwtpmNotFound, find_swtpm  # noqa: E402


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def swtpm_binary() -> Path:
    """Path of the swtpm binary; skips (fails under CI=true) when swtpm is not installed."""
    try:
        return find_swtpm()
    except SwtpmNotFound as exc:
        _skip_or_fail(f"swtpm not available: {exc}")
        raise  # unreachable: skip/fail raise


@pytest.fixture(scope="session")
def tpm2_pytss() -> Any:
    """The tpm2_pytss module; skips (fails under CI=true) when it is not installed."""
    try:
        import tpm2_pytss
    except ImportError as exc:
        _skip_or_fail(f"tpm2-pytss not available (pip install 'starlock-attestation[tpm]'): {exc}")
        raise
    return tpm2_pytss


@pytest.fixture
def swtpm_factory(swtpm_binary: Path, tmp_path: Path) -> Iterator[Callable[..., Swtpm]]:
    """Start software TPMs, one per simulated node; all are stopped and cleaned up afterwards.

    ``swtpm_factory()`` starts one with a fresh state directory under ``tmp_path``; keyword
    arguments go to :class:`Swtpm` (e.g. ``state_dir=...`` to reuse a node's state).
    """
    started: list[Swtpm] = []

    def start(**kwargs: Any) -> Swtpm:
        kwargs.setdefault("state_dir", tmp_path / f"swtpm-{len(started)}")
        kwargs.setdefault("binary", swtpm_binary)
        tpm = Swtpm(**kwargs)
        started.append(tpm)
        return tpm.start()

    yield start
    for tpm in started:
        tpm.close()


@pytest.fixture
def swtpm(swtpm_factory: Callable[..., Swtpm]) -> Swtpm:
    """A started software TPM with fresh state (all four PCR banks allocated, no EK)."""
    return swtpm_factory()
