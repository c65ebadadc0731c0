"""Fixtures of the differential tests: the vectors folder and the built Go program.

Vectors are read in place from ``../shared/vectors`` (beside the repository) or ``$STARLOCK_VECTORS``;
where neither exists the tests skip with a clear message, except under CI (``CI=true``), where that is
a failure. A missing Go toolchain or a failed build is always a failure, with one line naming the
cause: the differential envs exist to run Go.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _gorunner import REPO_ROOT, GoHarnessError, ensure_binary


def _vectors_dir() -> Path | None:
    env = os.environ.get("STARLOCK_VECTORS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "vectors")
    return next((c for c in candidates if (c / "MANIFEST.md").is_file()), None)


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The vectors folder; skips (fails under CI=true) when it is absent."""
    found = _vectors_dir()
    if found is None:
        message = (
            "attestation vectors not found: set STARLOCK_VECTORS or place shared/vectors beside the "
            "repository (see libs/attestation/README.md, 'Tests')"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def go_program() -> Path:
    """The built Go differential program (built on first use, then cached)."""
    try:
        return ensure_binary(report=print)
    except GoHarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
        raise  # unreachable


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the counts of the differential run (cases, agreements, intended differences, bugs)."""
    from _common import SUMMARY

    if SUMMARY:
        terminalreporter.section("differential: Starlock vs go-sev-guest / go-tpm-tools")
        for line in SUMMARY:
            terminalreporter.write_line(line)
