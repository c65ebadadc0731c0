"""pytest setup of the fuzz tests: the harness modules beside this file, the vectors, the packages.

The fuzz env installs every Starlock package, atheris and coverage. Elsewhere (e.g. the
integration env, which collects ``tests/``) the fuzz tests skip with a message naming what is
missing; with ``STARLOCK_FUZZ_REQUIRED=1`` (set by the fuzz envs) they run, and so fail loudly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fuzz_corpus import Vectors, find_vectors, missing_vectors_message  # noqa: E402

NEEDED = (
    "atheris",
    "coverage",
    "starlock.attestation",
    "starlock.atls",
    "starlock.kms",
    "starlock.joinservice",
    "starlock.bootstrapper",
)


def _missing() -> list[str]:
    out = []
    for name in NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(name)
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing()
    if not missing or os.environ.get("STARLOCK_FUZZ_REQUIRED") == "1":
        return
    marker = pytest.mark.skip(reason=f"fuzz tests need {missing}: run them in the fuzz tox env (tox -e fuzz)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def vectors() -> Vectors:
    """The vectors (read in place); skips without them, fails under CI=true."""
    root = find_vectors()
    if root is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing_vectors_message())
        pytest.skip(missing_vectors_message())
    return Vectors(root)
