"""Every Starlock service and command answers --version with its distribution's version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest


@pytest.mark.parametrize(
    ("module", "prog", "dist"),
    [
        ("starlock.verificationservice", "starlock-verificationservice", "starlock-verificationservice"),
        ("starlock.atls.cli", "starlock-atls", "starlock-atls"),
        ("starlock.attestation.cli", "starlock-verify", "starlock-attestation"),
    ],
)
def test_version(module: str, prog: str, dist: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{prog} {version(dist)}"
