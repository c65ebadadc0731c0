"""The starlock-joinservice distribution installs into the shared `starlock` namespace.

It is a PEP 420 namespace member beside the others, with the metadata and console script the
README promises.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("starlock-joinservice")
    assert meta["Name"] == "starlock-joinservice"
    assert meta["Requires-Python"] == ">=3.11"
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["starlock-joinservice"] == "starlock.joinservice.cli:main"


def test_namespace_and_typed_marker() -> None:
    starlock = importlib.import_module("starlock")
    # PEP 420: no __init__.py directly under src/starlock, so the namespace spans distributions.
    assert getattr(starlock, "__file__", None) is None
    assert importlib.resources.files("starlock.joinservice").joinpath("py.typed").is_file()


def test_version_flag() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "starlock.joinservice", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    expected = f"starlock-joinservice {importlib.metadata.version('starlock-joinservice')}"
    assert done.returncode == 0 and done.stdout.strip() == expected
