"""Fixtures: a real software TPM (swtpm) per test, driven through tpm2-pytss.

Where swtpm, tpm2-pytss or the swtpm launcher of starlock-attestation is missing, the TPM tests
skip with a message naming what to install; under CI (CI=true) that is a failure instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nodelock_testutil import skip_or_fail


@pytest.fixture(scope="session")
def tss() -> Any:
    """The tpm2_pytss module."""
    try:
        import tpm2_pytss
    except ImportError as exc:
        skip_or_fail(f"tpm2-pytss not available (pip install tpm2-pytss; needs libtss2): {exc}")
        raise
    return tpm2_pytss


@pytest.fixture(scope="session")
def swtpm_class(tss: Any) -> Any:
    """starlock.attestation.swtpm.Swtpm, once swtpm itself is known to be installed."""
    try:
        from starlock.attestation.swtpm import Swtpm, SwtpmNotFound, find_swtpm
    except ImportError as exc:
        skip_or_fail(f"the swtpm launcher comes with starlock-attestation (pip install -e libs/attestation): {exc}")
        raise
    try:
        find_swtpm()
    except SwtpmNotFound as exc:
        skip_or_fail(f"swtpm not available (apt-get install swtpm swtpm-tools): {exc}")
    return Swtpm


@pytest.fixture
def swtpm_factory(swtpm_class: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start software TPMs (fresh state under tmp_path unless ``state_dir`` is given); stop them all."""
    started: list[Any] = []

    def start(**kwargs: Any) -> Any:
        kwargs.setdefault("state_dir", tmp_path / f"swtpm-{len(started)}")
        tpm = swtpm_class(**kwargs)
        started.append(tpm)
        return tpm.start()

    yield start
    for tpm in started:
        tpm.close()


@pytest.fixture
def swtpm(swtpm_factory: Callable[..., Any]) -> Any:
    """A started swtpm with fresh state (all four PCR banks allocated, PCR 15 all zero)."""
    return swtpm_factory()


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    """A private directory for lock files (0700, like /run/starlock on a node)."""
    path = tmp_path / "run-starlock"
    path.mkdir(mode=0o700)
    return path
