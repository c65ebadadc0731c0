"""``starlock init`` against the real bootstrapper on a swtpm node and the real control plane."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import INIT_SECRET, Booted, run_init, starlock

from starlock.cli._common import CliError
from starlock.cli.init import rewrite_kubeconfig
from starlock.kms import ClusterKMS
from starlock.kms.derive import derive_cluster_id
from starlock.kms.mastersecret import read_master_secret_file
from starlock.kubecluster import ControlPlane


def test_wrong_secret_then_init(
    booted: Booted, init_node: Callable[[], int], kube_control_plane: ControlPlane, tmp_path: Path
) -> None:
    port = init_node()
    out = tmp_path / "operator"
    out.mkdir()
    wrong = tmp_path / "wrong-secret"
    wrong.write_bytes(b"not-the-secret")
    code, stdout, stderr = run_init(booted, f"localhost:{port}", out, wrong)
    assert code == 1, stderr
    assert "Init failed: invalid init secret" in stderr and "the node's log is in" in stderr
    (log,) = out.glob("starlock-init-failure-*.log")
    assert log.stat().st_mode & 0o777 == 0o600 and b"Init failed" in log.read_bytes()
    master_file = out / "constellation-mastersecret.json"  # written before Init was sent
    assert master_file.stat().st_mode & 0o777 == 0o600
    assert not (out / "starlock-admin.conf").exists()

    right = tmp_path / "init-secret"
    right.write_bytes(INIT_SECRET + b"\n")  # a trailing newline from an editor is not part of it
    code, stdout, stderr = run_init(booted, f"localhost:{port}", out, right, "--master-secret", str(master_file))
    assert code == 0, stderr
    state = json.loads((out / "starlock-state.json").read_text())
    master = read_master_secret_file(master_file)
    kms = ClusterKMS(master.key, master.salt)
    expected = derive_cluster_id(kms.get_dek("key-measurementSecret", 32), bytes.fromhex(state["measurementSalt"]))
    assert state["clusterID"] == expected.hex() and f"Cluster ID:       {expected.hex()}" in stdout
    kubeconfig = out / "starlock-admin.conf"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    api_port = kube_control_plane.server.rsplit(":", 1)[1]
    assert server == f"https://localhost:{api_port}"  # the endpoint's host, the API server's port
    for secret in (master.key, master.salt, INIT_SECRET):
        assert secret.hex() not in stdout + stderr and secret.decode(errors="ignore") not in stdout + stderr


def test_a_node_failing_attestation_is_refused_at_once(
    booted: Booted, init_node: Callable[[], int], tmp_path: Path
) -> None:
    port = init_node()
    secret = tmp_path / "init-secret"
    secret.write_bytes(INIT_SECRET)
    booted.config = booted.config_with(8, "ab" * 32)  # the operator expects another boot
    code, _, stderr = run_init(booted, f"127.0.0.1:{port}", tmp_path, secret)
    assert code == 1
    assert "failed attestation" in stderr and "index 8" in stderr
    assert "retrying" not in stderr  # a refusal is final
    assert not (tmp_path / "starlock-admin.conf").exists()


def test_unreachable_endpoint_retries_then_gives_up(booted: Booted, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = tmp_path / "init-secret"
    secret.write_bytes(INIT_SECRET)
    done = starlock(
        "init", "--endpoint", f"127.0.0.1:{port}", "--config", str(booted.config), "--variant", "qemu-vtpm",
        "--init-secret", str(secret), "--out", str(tmp_path), "--retry-interval", "0.2", "--timeout", "1.5",
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("retrying in 0.2 s") >= 2
    assert "stayed unavailable" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "nohost"], "is not HOST:PORT"),
        (["--endpoint", "127.0.0.1:99999"], "port 1-65535"),
        (["--config", "/nonexistent.json"], "cannot read attestation config"),
        (["--variant", "no-such-variant"], "no-such-variant"),
        (["--init-secret", "/dev/null"], "is empty"),
    ],
)
def test_usage_errors_are_one_line_exit_2(booted: Booted, tmp_path: Path, args: list[str], message: str) -> None:
    secret = tmp_path / "init-secret"
    secret.write_bytes(INIT_SECRET)
    base = {"--endpoint": "127.0.0.1:9000", "--config": str(booted.config), "--variant": "qemu-vtpm",
            "--init-secret": str(secret), "--out": str(tmp_path)}  # fmt: skip
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    done = starlock("init", *[x for kv in base.items() for x in kv], "--json")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["ok"] is False
    assert not list(tmp_path.glob("constellation-mastersecret.json"))  # nothing written on a usage error


def test_missing_required_flag_with_json_still_prints_json() -> None:
    done = starlock("init", "--json")
    assert done.returncode == 2 and json.loads(done.stdout) == {"ok": False, "error": "usage error (see stderr)"}


def test_kubeconfig_rewrite() -> None:
    doc = {"apiVersion": "v1", "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.5:6443"}}]}
    text = yaml.safe_dump(doc).encode()
    assert yaml.safe_load(rewrite_kubeconfig(text, "203.0.113.9"))["clusters"][0]["cluster"]["server"] == (
        "https://203.0.113.9:6443"
    )
    assert yaml.safe_load(rewrite_kubeconfig(text, "fd00::1"))["clusters"][0]["cluster"]["server"] == (
        "https://[fd00::1]:6443"
    )
    two = yaml.safe_dump({"clusters": [doc["clusters"][0], doc["clusters"][0]]}).encode()
    for bad in (b"[unclosed", b"{}", two, secrets.token_bytes(16)):
        with pytest.raises(CliError):
            rewrite_kubeconfig(bad, "h")
