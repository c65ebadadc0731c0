"""The distribution's metadata, public API and console script."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import subprocess
import sys


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("starlock-atls")
    assert meta["Name"] == "starlock-atls"
    requires = " ".join(meta.get_all("Requires-Dist") or []).lower()
    for dependency in ("starlock-attestation", "pyopenssl", "cryptography", "grpcio"):
        assert dependency in requires
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["starlock-atls"] == "starlock.atls.cli:main"


def test_namespace_typed_marker_and_public_api() -> None:
    starlock = importlib.import_module("starlock")
    assert getattr(starlock, "__file__", None) is None  # PEP 420 namespace
    assert importlib.resources.files("starlock.atls").joinpath("py.typed").is_file()
    for name in starlock.atls.__all__:
        assert hasattr(starlock.atls, name)


def test_cli_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "starlock.atls.cli", "tunnel", "server", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "--forward" in proc.stdout and "--validate" in proc.stdout
