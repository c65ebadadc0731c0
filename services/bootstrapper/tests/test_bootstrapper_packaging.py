"""The starlock-bootstrapper distribution installs into the shared `starlock` namespace.

It is a PEP 420 namespace member beside the others, with the metadata the README promises.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import skip_or_fail


def test_distribution_metadata() -> None:
    meta = importlib.metadata.metadata("starlock-bootstrapper")
    assert meta["Name"] == "starlock-bootstrapper"
    assert meta["Requires-Python"] == ">=3.11"


def test_namespace_and_typed_marker() -> None:
    starlock = importlib.import_module("starlock")
    # PEP 420: no __init__.py directly under src/starlock, so the namespace spans distributions.
    assert getattr(starlock, "__file__", None) is None
    assert importlib.resources.files("starlock.bootstrapper").joinpath("py.typed").is_file()


def test_console_script_and_systemd_unit(tmp_path: Path) -> None:
    """The unit (spec §5.1) passes ``systemd-analyze verify`` in a root holding the host's
    systemd units and the entry point where the unit expects it; a broken unit does not."""
    script = shutil.which("starlock-bootstrapper", path=str(Path(sys.executable).parent))
    assert script is not None, "the starlock-bootstrapper console script is not installed"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "--state-disk" in done.stdout
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60, check=False)
    meta = importlib.metadata.version("starlock-bootstrapper")
    assert done.returncode == 0 and done.stdout.strip() == f"starlock-bootstrapper {meta}"
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not Path("/lib/systemd/system/sysinit.target").exists():
        skip_or_fail("systemd-analyze and the systemd units are needed (Debian package systemd)")
    unit = Path(__file__).parents[1] / "systemd" / "starlock-bootstrapper.service"
    root = tmp_path / "root"
    (root / "opt" / "starlock" / "bin").mkdir(parents=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    entry = root / "opt" / "starlock" / "bin" / "starlock-bootstrapper"
    entry.write_text(f'#!/bin/sh\nexec {script} "$@"\n')
    entry.chmod(0o755)

    def verify(text: str) -> subprocess.CompletedProcess[str]:
        installed = root / "etc" / "systemd" / "system" / unit.name
        installed.write_text(text)
        return subprocess.run(
            [analyze, "verify", f"--root={root}", str(installed)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    text = unit.read_text()
    good = verify(text)
    assert good.returncode == 0 and good.stderr == "", good.stderr
    assert "RemainAfterExit=yes" in text and "EnvironmentFile=/run/constellation.env" in text
    bad = verify(text.replace("Type=simple", "Type=simpel"))
    assert "Failed to parse service type" in bad.stderr
    entry.unlink()
    assert verify(text).returncode != 0  # the entry point is missing
