"""The starlock-bootstrapper distribution installs into the shared `starlock` namespace.

It is a PEP 420 namespace member beside the others, with the metadata the README promises.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("starlock-bootstrapper")
    assert meta["Name"] == "starlock-bootstrapper"
    assert meta["Requires-Python"] == ">=3.11"


def test_namespace_and_typed_marker() -> None:
    starlock = importlib.import_module("starlock")
    # PEP 420: no __init__.py directly under src/starlock, so the namespace spans distributions.
    assert getattr(starlock, "__file__", None) is None
    assert importlib.resources.files("starlock.bootstrapper").joinpath("py.typed").is_file()
