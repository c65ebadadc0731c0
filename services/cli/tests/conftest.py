"""Real parts for the operator CLI: a booted swtpm node running the real ``starlock-bootstrapper``
(``local`` driver, the real control plane) and the CLI run as a process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from starlock.kubecluster import ControlPlane

pytest_plugins = ["starlock.kubecluster.pytest_plugin"]

INIT_SECRET = b"operator-init-secret-0123456789"


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def starlock(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starlock.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def run_init(booted: Booted, endpoint: str, out: Path, secret_file: Path, *extra: str) -> tuple[int, str, str]:
    """``starlock init`` against ``endpoint``: exit code, stdout, stderr."""
    done = starlock(
        "init", "--endpoint", endpoint, "--config", str(booted.config), "--variant", "qemu-vtpm",
        "--init-secret", str(secret_file), "--out", str(out), "--retry-interval", "0.5", "--timeout", "60", *extra,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


@dataclass
class Booted:
    """A swtpm node after a synthetic measured boot, and the attestation config it satisfies."""

    root: Path
    tpm: Any
    config: Path
    measurements: dict[str, dict[str, object]]

    @property
    def event_log(self) -> Path:
        return self.root / "eventlog.bin"

    def config_with(self, index: int, expected: str) -> Path:
        changed = dict(self.measurements)
        changed[str(index)] = {"expected": expected, "warnOnly": False}
        path = self.root / f"config-{index}.json"
        path.write_text(json.dumps({"measurements": changed}))
        return path


@pytest.fixture
def booted(tmp_path: Path) -> Iterator[Booted]:
    try:
        import tpm2_pytss  # noqa: F401

        from starlock.attestation.swtpm import SwtpmNotFound, booted_swtpm, find_swtpm

        binary = find_swtpm()
    except (ImportError, SwtpmNotFound) as exc:
        skip_or_fail(f"swtpm / tpm2-pytss not available: {exc}")
        raise
    with booted_swtpm(tmp_path, binary=binary) as booted:
        measurements = booted.measurements()
        config = tmp_path / "attestation-config.json"
        config.write_text(json.dumps({"measurements": measurements}))
        yield Booted(tmp_path, booted.tpm, config, measurements)


class Bootstrapper:
    """Starts the real bootstrapper on the node (first node, control plane); a call returns the port
    it serves: the init server's, or with ``recovery=True`` (a rebooted node) the recovery server's."""

    def __init__(self, booted: Booted, plane: ControlPlane) -> None:
        self.booted = booted
        self.plane = plane
        self.procs: list[subprocess.Popen[bytes]] = []

    def __call__(self, *, recovery: bool = False) -> int:
        booted = self.booted
        port, recovery_port = free_port(), free_port()
        me = {"Name": "cli-cp-0", "ProviderID": "local:///cli-cp-0", "Role": "ControlPlane", "VPCIP": "127.0.0.1"}
        meta = booted.root / "metadata.json"
        init_hash = bcrypt.hashpw(INIT_SECRET, bcrypt.gensalt(rounds=4)).decode()
        meta.write_text(json.dumps({"self": me, "initSecretHash": init_hash}))
        args = [
            sys.executable, "-m", "starlock.bootstrapper.cli", "--variant", "qemu-vtpm", "--csp", "qemu",
            "--tcti", booted.tpm.tcti, "--event-log", str(booted.event_log), "--metadata", f"local:{meta}",
            "--state-disk", f"file:{booted.root / 'disk'}", "--driver", "local", "--root", str(booted.root / "fs"),
            "--listen", f"127.0.0.1:{port}", "--recovery-listen", f"127.0.0.1:{recovery_port}",
            "--join-interval", "0.2", "--on-fatal", "exit",
            "--local-admin-kubeconfig", str(self.plane.admin_kubeconfig),
            "--log-file", str(booted.root / "bootstrapper.log"),
        ]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        serving = recovery_port if recovery else port
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (booted.root / "bootstrapper.log").read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", serving), timeout=0.5):
                    return serving
            except OSError:
                assert time.monotonic() < deadline, "the bootstrapper did not listen"
                time.sleep(0.1)


@pytest.fixture
def init_node(booted: Booted, kube_control_plane: ControlPlane) -> Iterator[Bootstrapper]:
    bootstrapper = Bootstrapper(booted, kube_control_plane)
    yield bootstrapper
    for proc in bootstrapper.procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def reboot(booted: Booted) -> None:
    """Power-cycle the node: the TPM restarts (PCRs reset), the same boot is measured again, and
    /run (the node lock file) is empty again."""
    from starlock.attestation.measured_boot import run_synthetic_boot

    booted.tpm.restart()
    run_synthetic_boot(booted.tpm.tcti, booted.event_log)
    (booted.root / "fs" / "run" / "starlock" / "nodelock").unlink(missing_ok=True)


def read_pcr15(booted: Booted) -> bytes:
    from starlock.nodelock import read_cluster_id_pcr

    return read_cluster_id_pcr(booted.tpm.tcti)
