"""``starlock recover`` against the real bootstrapper after a reboot of the whole cluster: the
node initialized by ``starlock init``, its TPM power-cycled, no join service anywhere."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import grpc
import pytest
from conftest import INIT_SECRET, Booted, Bootstrapper, read_pcr15, reboot, run_init, starlock

from starlock.cli._common import CliError
from starlock.kms.mastersecret import MasterSecret, read_master_secret_file, write_master_secret_file


def _recover(booted: Booted, master: Path, *endpoints: str, config: Path | None = None) -> tuple[int, str, str]:
    args = ["recover", "--config", str(config or booted.config), "--variant", "qemu-vtpm"]
    for endpoint in endpoints:
        args += ["--endpoint", endpoint]
    done = starlock(*args, "--master-secret", str(master), "--retry-interval", "0.5", "--timeout", "60")
    return done.returncode, done.stdout, done.stderr


def _initialized(booted: Booted, init_node: Bootstrapper, out: Path) -> str:
    """``starlock init`` on the node; its cluster ID. The bootstrapper exits once it is done."""
    port = init_node()
    secret = out / "init-secret"
    secret.write_bytes(INIT_SECRET)
    code, _, stderr = run_init(booted, f"127.0.0.1:{port}", out, secret)
    assert code == 0, stderr
    assert init_node.procs[-1].wait(60) == 0
    return str(json.loads((out / "starlock-state.json").read_text())["clusterID"])


def test_recover_a_control_plane_after_a_full_reboot(booted: Booted, init_node: Bootstrapper, tmp_path: Path) -> None:
    out = tmp_path / "operator"
    out.mkdir()
    cluster_id = _initialized(booted, init_node, out)
    reboot(booted)
    assert read_pcr15(booted) == bytes(32)
    port = init_node(recovery=True)  # the disk is initialized, PCR 15 is zero: rejoin, and wait for recovery

    other = tmp_path / "other-mastersecret.json"
    write_master_secret_file(other, MasterSecret.generate())
    code, stdout, stderr = _recover(booted, other, f"127.0.0.1:{port}")
    assert code == 1, stderr
    assert f"the node at 127.0.0.1:{port} refused the master secret" in stderr and "nothing was changed" in stderr
    assert init_node.procs[-1].poll() is None and read_pcr15(booted) == bytes(32)

    master_file = out / "constellation-mastersecret.json"
    code, stdout, stderr = _recover(booted, master_file, f"127.0.0.1:{port}")
    assert code == 0, stderr
    assert stdout == f"Recovered: 127.0.0.1:{port}\n"
    assert init_node.procs[-1].wait(60) == 0  # unlocked, re-marked, kubelet started: done
    mark = hashlib.sha256(bytes(32) + hashlib.sha256(bytes.fromhex(cluster_id)).digest()).digest()
    assert read_pcr15(booted) == mark  # the cluster ID of the init, again
    master = read_master_secret_file(master_file)
    log = (booted.root / "bootstrapper.log").read_bytes()
    for secret in (master.key, master.salt):
        assert secret.hex() not in stdout + stderr
        for form in (secret.hex().encode(), secret):
            assert form not in log


def test_a_node_failing_attestation_gets_no_secret(booted: Booted, init_node: Bootstrapper, tmp_path: Path) -> None:
    out = tmp_path / "operator"
    out.mkdir()
    _initialized(booted, init_node, out)
    reboot(booted)
    port = init_node(recovery=True)
    code, _, stderr = _recover(
        booted, out / "constellation-mastersecret.json", f"127.0.0.1:{port}", config=booted.config_with(8, "ab" * 32)
    )
    assert code == 1 and "failed attestation" in stderr and "index 8" in stderr
    assert "retrying" not in stderr
    assert init_node.procs[-1].poll() is None and read_pcr15(booted) == bytes(32)


def test_several_endpoints_report_each(booted: Booted, tmp_path: Path) -> None:
    """Nothing listens: each endpoint is retried until the timeout, then reported on its own line."""
    from conftest import free_port

    master = tmp_path / "mastersecret.json"
    write_master_secret_file(master, MasterSecret.generate())
    a, b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    done = starlock(
        "recover", "--config", str(booted.config), "--variant", "qemu-vtpm", "--endpoint", a, "--endpoint", b,
        "--master-secret", str(master), "--retry-interval", "0.2", "--timeout", "1", "--json",
    )  # fmt: skip
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["recovered"] == []
    assert set(report["failed"]) == {a, b} and all("stayed unavailable" in r for r in report["failed"].values())


def test_usage_errors(booted: Booted, tmp_path: Path) -> None:
    missing = starlock("recover", "--config", str(booted.config), "--variant", "qemu-vtpm", "--endpoint", "h:9999")
    assert missing.returncode == 2 and "--master-secret" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    done = starlock(
        "recover", "--config", str(booted.config), "--variant", "qemu-vtpm", "--endpoint", "h:99999",
        "--master-secret", str(bad),
    )  # fmt: skip
    assert done.returncode == 2 and "is not HOST:PORT" in done.stderr
    done = starlock(
        "recover", "--config", str(booted.config), "--variant", "qemu-vtpm", "--endpoint", "h:9999",
        "--master-secret", str(bad),
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "master secret" in done.stderr


class _Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"the node says {self._code.name}"


def test_busy_and_unavailable_are_retried_refusals_are_final(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from starlock.cli import recover

    answers: list[grpc.RpcError | None] = [
        _Status(grpc.StatusCode.RESOURCE_EXHAUSTED),
        _Status(grpc.StatusCode.UNAVAILABLE),
        None,
    ]
    monkeypatch.setattr(recover, "_call", lambda *_: answers.pop(0))
    recover.recover_one("h:9999", None, None, timeout=30, retry_interval=0.01)
    err = capsys.readouterr().err
    assert not answers and "h:9999 busy, retrying" in err and "h:9999 unavailable, retrying" in err

    for code, exit_code in [
        (grpc.StatusCode.PERMISSION_DENIED, 1),
        (grpc.StatusCode.INVALID_ARGUMENT, 1),
        (grpc.StatusCode.INTERNAL, 1),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 2),
    ]:
        answers[:] = [_Status(code), None]
        with pytest.raises(CliError) as failed:
            recover.recover_one("h:9999", None, None, timeout=30, retry_interval=0.01)
        assert failed.value.exit_code == exit_code and len(answers) == 1  # not retried


def test_the_endpoint_defaults_to_the_init_hosts_recovery_port(booted: Booted, tmp_path: Path) -> None:
    master = tmp_path / "mastersecret.json"
    write_master_secret_file(master, MasterSecret.generate())
    common = ["recover", "--config", str(booted.config), "--variant", "qemu-vtpm", "--master-secret", str(master)]
    done = starlock(*common, "--state", str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "no --endpoint given and no state file" in done.stderr

    state = tmp_path / "starlock-state.json"
    state.write_text(json.dumps({"endpoint": "127.0.0.1:9000", "clusterID": "00" * 32}))
    done = starlock(*common, "--state", str(state), "--timeout", "1", "--retry-interval", "0.2", "--json")
    report = json.loads(done.stdout)
    assert list(report["failed"]) == ["127.0.0.1:9999"] and report["ok"] is False

    state.write_text(json.dumps({"clusterID": "00" * 32}))
    done = starlock(*common, "--state", str(state))
    assert done.returncode == 2 and "holds no HOST:PORT endpoint" in done.stderr
