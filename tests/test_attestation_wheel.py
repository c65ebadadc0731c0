"""starlock-attestation as a third party gets it: a wheel installed alone in a clean venv.

The wheel is built from this working tree, installed into a fresh virtual environment with
nothing else of Starlock, and its ``starlock-verify`` checks a document that a live swtpm issued
(issued here with the repository's own environment, which has the ``[tpm]`` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from starlock.attestation.document import HASH_ALG_IDS
from starlock.attestation.measured_boot import replay, run_synthetic_boot
from starlock.attestation.qemu import QemuVtpmIssuer
from starlock.attestation.swtpm import Swtpm, SwtpmNotFound, find_swtpm

ROOT = Path(__file__).resolve().parents[1]
NONCE = bytes(range(1, 33))


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT / "libs/attestation")])
    assert built.returncode == 0, built.stderr[-2000:]
    wheels = list(dist.glob("starlock_attestation-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    pip = _run([str(env_dir / "bin/python"), "-m", "pip", "install", "-q", str(wheels[0])])
    assert pip.returncode == 0, pip.stderr[-2000:]
    return env_dir


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    try:
        find_swtpm()
    except SwtpmNotFound as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"swtpm not available: {exc}")
        pytest.skip(f"swtpm not available: {exc}")
    tmp = tmp_path_factory.mktemp("issued")
    with Swtpm(tmp / "state") as tpm:
        events = run_synthetic_boot(tpm.tcti, tmp / "log.bin")
        document = QemuVtpmIssuer(tpm.tcti, event_log_path=tmp / "log.bin").issue(b"wheel test", NONCE)
    golden = replay(events, HASH_ALG_IDS["SHA256"], sorted({e.pcr for e in events}))
    (tmp / "doc.json").write_bytes(document)
    config = {"measurements": {str(i): {"expected": v.hex(), "warnOnly": False} for i, v in golden.items()}}
    (tmp / "config.json").write_text(json.dumps(config))
    yield tmp / "doc.json", tmp / "config.json"


def test_wheel_installs_alone_and_has_no_other_starlock_package(clean_venv: Path) -> None:
    listed = _run([str(clean_venv / "bin/python"), "-m", "pip", "list", "--format=json"])
    names = {p["name"] for p in json.loads(listed.stdout)}
    assert "starlock-attestation" in names
    assert not {n for n in names if n.startswith("starlock-") and n != "starlock-attestation"}
    assert "tpm2-pytss" not in names  # verification needs no TPM stack


def test_starlock_verify_help(clean_venv: Path) -> None:
    out = _run([str(clean_venv / "bin/starlock-verify"), "--help"])
    assert out.returncode == 0
    assert "document" in out.stdout


def test_starlock_verify_checks_a_live_document(clean_venv: Path, issued: tuple[Path, Path]) -> None:
    doc, config = issued
    base = [str(clean_venv / "bin/starlock-verify"), "document", str(doc), "--variant", "qemu-vtpm"]
    good = _run([*base, "--config", str(config), "--nonce", NONCE.hex(), "--json"])
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["accepted"] is True
    stale = _run([*base, "--config", str(config), "--nonce", "00" * 32])
    assert stale.returncode == 1
    assert "NonceMismatch" in stale.stdout
