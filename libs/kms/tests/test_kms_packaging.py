"""starlock-kms installs into the shared PEP 420 `starlock` namespace with its console script."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import shutil
import subprocess

import starlock.kms
import starlock.kms.keyservice


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("starlock-kms")
    assert meta["Name"] == "starlock-kms"
    assert meta["Requires-Python"] == ">=3.11"
    requires = importlib.metadata.requires("starlock-kms") or []
    assert {r.split(">")[0].split(";")[0].strip() for r in requires} >= {"starlock-joinproto", "cryptography", "grpcio"}


def test_namespace_and_typed_marker() -> None:
    starlock = importlib.import_module("starlock")
    # PEP 420: no __init__.py directly under src/starlock, so the namespace spans distributions.
    assert getattr(starlock, "__file__", None) is None
    assert importlib.resources.files("starlock.kms").joinpath("py.typed").is_file()


def test_public_api_is_explicit() -> None:
    for module in (starlock.kms, starlock.kms.keyservice):
        for name in module.__all__:
            assert hasattr(module, name), name


def test_console_script() -> None:
    entry = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "starlock-keyservice"]
    assert [e.value for e in entry] == ["starlock.kms.keyservice.cli:main"]
    exe = shutil.which("starlock-keyservice")
    assert exe is not None
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, check=True)
    for flag in ("--port", "--master-secret", "--salt", "-v", "--unix", "--tls-cert", "--insecure-plaintext"):
        assert flag in res.stdout
