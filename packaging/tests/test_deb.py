"""The starlock-bootstrapper Debian package (packaging/deb/build-deb.sh), installed into a Debian root.

The package is built from the working tree, then installed with ``dpkg -i`` into a copy of the
cached debootstrap root filesystem (packaging/build-image.sh's) to which only the packages its
``Depends`` names were added with apt (that tree is cached too, keyed by the Depends line). In a
chroot of it: ``starlock-bootstrapper --help``, the TPM library imports (so the declared libtss2
packages are enough), ``dpkg --verify``; ``systemd-analyze verify --root`` on the installed unit;
finally ``dpkg --purge`` leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, require_tool, run, unavailable

BUILD_DEB = ROOT / "packaging" / "deb" / "build-deb.sh"
UNIT = "usr/lib/systemd/system/starlock-bootstrapper.service"


@dataclass(frozen=True)
class Built:
    deb: Path
    info: dict[str, object]


def _require_root_tools() -> None:
    if os.geteuid() != 0:
        unavailable("building and installing the .deb needs root (debootstrap, chroot)")
    for tool, package in (
        ("dpkg-deb", "dpkg"),
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("debootstrap", "debootstrap"),
        ("unshare", "util-linux"),
        ("systemd-analyze", "systemd"),
        ("pkg-config", "pkg-config"),
    ):
        require_tool(tool, package)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    _require_root_tools()
    out = tmp_path_factory.mktemp("deb")
    env = {**os.environ, "PYTHON": sys.executable}
    res = run(["bash", str(BUILD_DEB), "--output", str(out)], timeout=1200, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    info = json.loads((out / "deb-info.json").read_text())
    print(res.stdout)  # sizes and timings, shown with -s
    return Built(Path(str(info["deb"])), info)


def _chroot(root: Path, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``cmd`` in a chroot of ``root`` with /proc and /dev, in a private mount namespace (the
    mounts end with the process)."""
    script = 'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && shift && exec chroot "$@"'
    return run(["unshare", "--mount", "--fork", "sh", "-c", script, "sh", str(root), str(root), *cmd], timeout=timeout)


def _depends_names(depends: str) -> list[str]:
    return [re.sub(r"\s*\(.*\)", "", d).strip() for d in depends.split(",")]


@pytest.fixture(scope="module")
def root(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the base root filesystem plus exactly the packages the Depends line names."""
    base = Path(str(built.info["rootfs_tar"]))
    depends = str(built.info["depends"])
    key = hashlib.sha256(f"{base}\n{depends}\n".encode()).hexdigest()[:12]
    cached = base.parent / f"bootstrapper-depends-{key}.tar"
    target = tmp_path_factory.mktemp("rootfs") / "root"
    target.mkdir()
    if not cached.exists():
        res = run(["tar", "-C", str(target), "-xf", str(base)])
        assert res.returncode == 0, res.stderr
        shutil.copy("/etc/resolv.conf", target / "etc" / "resolv.conf")
        (target / "etc" / "apt" / "sources.list").write_text(f"deb {built.info['mirror']} {built.info['suite']} main\n")
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends",
             *_depends_names(depends)],
            ["apt-get", "clean"],
        ):  # fmt: skip
            res = _chroot(target, *cmd, timeout=900)
            assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
        shutil.rmtree(target / "var" / "lib" / "apt" / "lists")
        partial = cached.with_suffix(".tmp")
        res = run(["tar", "-C", str(target), "--exclude=./dev/*", "--exclude=./proc/*", "-cf", str(partial), "."])
        assert res.returncode == 0, res.stderr
        partial.rename(cached)
    else:
        res = run(["tar", "-C", str(target), "-xf", str(cached)])
        assert res.returncode == 0, res.stderr
    return target


def test_control_file(built: Built) -> None:
    fields = run(["dpkg-deb", "--field", str(built.deb)]).stdout
    assert "Package: starlock-bootstrapper" in fields
    depends = _depends_names(str(built.info["depends"]))
    for needed in ("python3.11", "cryptsetup-bin", "systemd", "libtss2-esys-3.0.2-0", "libtss2-tcti-device0"):
        assert needed in depends, depends
    listing = run(["dpkg-deb", "--contents", str(built.deb)]).stdout
    assert f"./{UNIT}" in listing and "./opt/starlock/bin/starlock-bootstrapper" in listing
    assert "./usr/share/starlock-bootstrapper/constellation.env.example" in listing
    assert "root/root" in listing and "/opt/starlock/bin/pip" not in listing
    assert not [line for line in listing.splitlines() if line.endswith(".whl")]


def test_install_run_verify_purge(built: Built, root: Path) -> None:
    shutil.copy(built.deb, root / "tmp" / "starlock-bootstrapper.deb")
    installed = _chroot(root, "dpkg", "-i", "/tmp/starlock-bootstrapper.deb")
    assert installed.returncode == 0, installed.stdout + installed.stderr  # Depends satisfied by the root

    helped = _chroot(root, "/opt/starlock/bin/starlock-bootstrapper", "--help")
    assert helped.returncode == 0 and "--state-disk" in helped.stdout, helped.stderr
    # the TPM stack loads with only the declared packages (tpm2-pytss links libtss2-*; the device
    # TCTI is loaded by name at run time)
    probe = (
        "import tpm2_pytss, starlock.nodelock, starlock.bootstrapper.cli, ctypes; "
        "ctypes.CDLL('libtss2-tcti-device.so.0'); print(tpm2_pytss.__file__)"
    )
    imported = _chroot(root, "/opt/starlock/bin/python", "-c", probe)
    assert imported.returncode == 0 and imported.stdout.startswith("/opt/starlock/"), imported.stderr
    assert _chroot(root, "sh", "-c", "command -v cryptsetup && command -v systemctl").returncode == 0
    verified = _chroot(root, "dpkg", "--verify", "starlock-bootstrapper")
    assert verified.returncode == 0 and verified.stdout == "", verified.stdout  # nothing installed was changed

    analyze = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", str(root / UNIT)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert analyze.returncode == 0 and analyze.stderr == "", analyze.stderr

    purged = _chroot(root, "dpkg", "--purge", "starlock-bootstrapper")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not (root / "opt" / "starlock").exists(), "files the package did not own were left in /opt/starlock"
    assert not (root / UNIT).exists()


def test_missing_tool_names_its_debian_package(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname",):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    res = run(["/bin/bash", str(BUILD_DEB)], env={"PATH": str(bin_dir)}, timeout=30)
    assert res.returncode == 1
    assert "dpkg-deb not found: install the Debian package 'dpkg'" in res.stderr, res.stderr
