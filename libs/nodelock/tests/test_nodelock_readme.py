"""The README example runs against a software TPM; the distribution's metadata is right."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import re
from pathlib import Path
from typing import Any

import pytest
from nodelock_testutil import read_pcr15, single_extend

README = Path(__file__).parents[1] / "README.md"


def readme_example() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert match is not None, "README has no python example"
    return match.group(1)


def test_readme_example_runs(swtpm: Any, tss: Any, lock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = readme_example()
    assert '"device:/dev/tpmrm0"' in code
    assert '"/run/starlock/nodelock"' in code
    code = code.replace('"device:/dev/tpmrm0"', repr(swtpm.tcti)).replace(
        '"/run/starlock/nodelock"', repr(str(lock_dir / "nodelock"))
    )
    cluster_id = bytes(range(32))
    exec(compile(code, str(README), "exec"), {"cluster_id": cluster_id})
    assert capsys.readouterr().out.strip().splitlines()[-1] == "this caller bootstraps the node"
    assert read_pcr15(tss, swtpm.tcti)["sha256"] == single_extend(cluster_id)


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("starlock-nodelock")
    assert meta["Name"] == "starlock-nodelock"
    assert meta["Requires-Python"] == ">=3.11"
    assert any(req.startswith("tpm2-pytss>=") for req in meta.get_all("Requires-Dist") or [])


def test_namespace_and_typed_marker() -> None:
    starlock = importlib.import_module("starlock")
    # PEP 420: no __init__.py directly under src/starlock, so the namespace spans distributions.
    assert getattr(starlock, "__file__", None) is None
    assert importlib.resources.files("starlock.nodelock").joinpath("py.typed").is_file()


def test_public_api_is_explicit() -> None:
    nodelock = importlib.import_module("starlock.nodelock")
    for name in nodelock.__all__:
        assert hasattr(nodelock, name), name
