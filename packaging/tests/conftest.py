"""Shared fixtures of the packaging tests: the built distributions and the tool checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBS = ("joinproto", "attestation", "atls", "kms", "nodelock")


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true: in CI a missing tool is a broken setup, not an optional test."""
    if _ci():
        pytest.fail(reason)
    pytest.skip(reason)


def require_tool(name: str, debian_package: str) -> str:
    """Path of ``name`` (also looked up beside this Python); a clear skip/failure naming its package."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        unavailable(
            f"{name} not found: install the Debian package '{debian_package}' (apt-get install {debian_package})"
        )
    assert found is not None
    return found


def run(cmd: list[str], *, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)


@dataclass(frozen=True)
class Dist:
    name: str  # distribution name, e.g. starlock-kms
    folder: Path
    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dist]:
    """sdist and wheel of every library, built with `python -m build` (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation when the build backend is installed here (tox installs it): no fresh build
    # venv per package, which on 2 shared cores is most of the time.
    try:
        import hatchling  # noqa: F401

        isolation = ["--no-isolation"]
    except ImportError:
        isolation = []
    built: dict[str, Dist] = {}
    for lib in LIBS:
        folder = ROOT / "libs" / lib
        res = run([sys.executable, "-m", "build", *isolation, "--outdir", str(out), str(folder)])
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        stem = f"starlock_{lib}"
        wheels = list(out.glob(f"{stem}-*.whl"))
        sdists = list(out.glob(f"{stem}-*.tar.gz"))
        assert len(wheels) == 1 and len(sdists) == 1, (wheels, sdists)
        built[f"starlock-{lib}"] = Dist(f"starlock-{lib}", folder, wheels[0], sdists[0])
    return built
