"""``starlock-keyservice`` as a real process: flags, transports, SIGTERM, and a log scan for secrets."""

from __future__ import annotations

import base64
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc
from starlock.kms import ClusterKMS

KEYSERVICE = [sys.executable, "-m", "starlock.kms.keyservice"]

# Runs the real service (flags, signals, transports) with a backend that takes DELAY seconds.
SLOW_SERVICE = """
import sys, time
from starlock.kms import ClusterKMS
from starlock.kms.keyservice import parse_args, run

class Slow(ClusterKMS):
    def get_dek(self, dek_id, length):
        time.sleep(float(sys.argv[1]))
        return super().get_dek(dek_id, length)

sys.exit(run(parse_args(sys.argv[2:]), kms=Slow(bytes(range(32)), bytes(range(32, 64)))))
"""


def _stub(target: str, creds: grpc.ChannelCredentials | None = None) -> tuple[grpc.Channel, Any]:
    if creds is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, creds, [("grpc.ssl_target_name_override", "localhost")])
    return channel, keyservice_pb2_grpc.APIStub(channel)


def _req(data_key_id: str, length: int) -> keyservice_pb2.GetDataKeyRequest:
    return keyservice_pb2.GetDataKeyRequest(data_key_id=data_key_id, length=length)


def _secret_files(tmp_path: Path, key: bytes, salt: bytes) -> list[str]:
    (tmp_path / "mastersecret").write_bytes(key)
    (tmp_path / "salt").write_bytes(salt)
    return ["--master-secret", str(tmp_path / "mastersecret"), "--salt", str(tmp_path / "salt")]


def _forms(secret: bytes) -> list[str]:
    b64 = base64.b64encode(secret).decode()
    b64url = base64.urlsafe_b64encode(secret).decode()
    forms = [secret.hex(), secret.hex().upper(), b64, b64.rstrip("="), b64url, b64url.rstrip("=")]
    # Also any 16-byte window, in case something logs a truncated key.
    forms += [secret[i : i + 16].hex() for i in range(0, max(1, len(secret) - 15), 8)]
    return forms


def test_log_scan_at_highest_verbosity(tmp_path: Path, sockdir: Path, start_keyservice: Callable[..., Any]) -> None:
    key, salt = secrets.token_bytes(32), secrets.token_bytes(32)
    sock = sockdir / "ks.sock"
    ks = start_keyservice("-v", "6", "--unix", str(sock), *_secret_files(tmp_path, key, salt))
    ks.wait_for("key service listening")
    kms = ClusterKMS(key, salt)
    returned: list[bytes] = []
    channel, stub = _stub(f"unix:{sock}")
    with channel:
        for data_key_id, length in (("measurementSecret", 32), ("ca_emergency_ssh", 32), ("disk-1", 64), ("x", 17)):
            got = bytes(stub.GetDataKey(_req(data_key_id, length), timeout=10).data_key)
            assert got == kms.get_dek("key-" + data_key_id, length)
            returned.append(got)
        for bad in (_req("x", 0), _req("", 32), _req("x", 9000)):
            with pytest.raises(grpc.RpcError):
                stub.GetDataKey(bad, timeout=10)
    assert ks.terminate() == 0
    output = ks.output()
    records = ks.records()  # every line of stderr is a JSON object
    assert any(r["msg"] == "GetDataKey request" and r["v"] == 2 for r in records)
    assert any(r["msg"] == "GetDataKey success" and r["v"] == 4 for r in records)
    assert any(r["msg"] == "GetDataKey failed" and r["code"] == "INVALID_ARGUMENT" for r in records)
    for secret in (key, salt, *returned):
        for form in _forms(secret):
            assert form not in output, "a secret reached the logs"
    assert key.decode("latin-1") not in output


def test_verbosity_zero_logs_no_requests(tmp_path: Path, sockdir: Path, start_keyservice: Callable[..., Any]) -> None:
    sock = sockdir / "ks.sock"
    ks = start_keyservice("--unix", str(sock), *_secret_files(tmp_path, b"k" * 32, b"s" * 32))
    ks.wait_for("key service listening")
    channel, stub = _stub(f"unix:{sock}")
    with channel:
        stub.GetDataKey(_req("x", 32), timeout=10)
    assert ks.terminate() == 0
    assert not [r for r in ks.records() if r["msg"].startswith("GetDataKey")]


def test_sigterm_lets_in_flight_calls_finish(sockdir: Path, start_keyservice: Callable[..., Any]) -> None:
    sock = sockdir / "slow.sock"
    ks = start_keyservice("2.0", "-v", "2", "--unix", str(sock), argv0=[sys.executable, "-c", SLOW_SERVICE])
    ks.wait_for("key service listening")
    channel, stub = _stub(f"unix:{sock}")
    with channel:
        in_flight = [stub.GetDataKey.future(_req(f"id{i}", 32), timeout=30) for i in range(3)]
        deadline = time.monotonic() + 10
        while sum('"GetDataKey request"' in line for line in ks.stderr) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        t0 = time.monotonic()
        ks.proc.send_signal(signal.SIGTERM)  # SIGTERM while the three calls sleep in the backend
        ks.wait_for("shutting down")
        # A call started after SIGTERM is refused rather than run.
        with pytest.raises(grpc.RpcError) as late:
            stub.GetDataKey(_req("late", 32), timeout=5)
        assert late.value.code() == grpc.StatusCode.UNAVAILABLE
        kms = ClusterKMS(bytes(range(32)), bytes(range(32, 64)))
        for i, fut in enumerate(in_flight):
            assert bytes(fut.result().data_key) == kms.get_dek(f"key-id{i}", 32)
    assert ks.terminate(signal_sent=True) == 0
    assert time.monotonic() - t0 < 20
    assert ks.records()[-1]["msg"] == "key service stopped"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--unix", "/tmp/x.sock", "--insecure-plaintext"],
        ["--tls-cert", "c.pem"],
        ["--unix", "/tmp/x.sock", "--listen-host", "0.0.0.0"],
        ["--insecure-plaintext", "--port", "70000"],
    ],
)
def test_usage_errors(args: list[str]) -> None:
    res = subprocess.run([*KEYSERVICE, *args], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert "usage:" in res.stderr


@pytest.mark.parametrize(("key_len", "salt_len", "fragment"), [(15, 32, "master secret is 15"), (32, 31, "salt is 31")])
def test_short_secret_files_exit_1_without_secret(
    tmp_path: Path, sockdir: Path, key_len: int, salt_len: int, fragment: str
) -> None:
    key, salt = secrets.token_bytes(key_len), secrets.token_bytes(salt_len)
    res = subprocess.run(
        [*KEYSERVICE, "--unix", str(sockdir / "s.sock"), *_secret_files(tmp_path, key, salt)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    record = json.loads(res.stderr.splitlines()[-1])
    assert record["level"] == "ERROR"
    assert fragment in record["error"]
    for secret in (key, salt):
        assert secret.hex() not in res.stderr
        assert base64.b64encode(secret).decode().rstrip("=") not in res.stderr


def _uri_file(directory: Path, uri: str, mode: int = 0o600) -> Path:
    path = directory / "kms-uri"
    path.write_text(uri)
    path.chmod(mode)
    return path


def test_unsupported_kms_uri_exits_1(sockdir: Path) -> None:
    uri_file = _uri_file(sockdir, "kms://aws?region=r&accessKeyID=i&accessKey=SECRETVALUE&keyName=k")
    res = subprocess.run(
        [*KEYSERVICE, "--unix", str(sockdir / "s.sock"), "--kms-uri-file", str(uri_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    assert "kms://aws is not supported" in res.stderr
    assert "SECRETVALUE" not in res.stderr


def test_kms_uri_cluster(sockdir: Path, start_keyservice: Callable[..., Any]) -> None:
    from starlock.kms import MasterSecret

    secret = MasterSecret(bytes(range(32)), bytes(range(32, 64)))
    sock = sockdir / "u.sock"
    ks = start_keyservice("--unix", str(sock), "--kms-uri-file", str(_uri_file(sockdir, secret.to_uri())))
    ks.wait_for("key service listening")
    channel, stub = _stub(f"unix:{sock}")
    with channel:
        got = bytes(stub.GetDataKey(_req("measurementSecret", 32), timeout=10).data_key)
    assert got.hex() == "ea7fedd14f5a29b1b8545592fc20bfdae06918e4ff447b1a0b8e4f3356005bda"  # §3.7.2 set S
    assert ks.terminate() == 0


def test_insecure_plaintext_binds_loopback(tmp_path: Path, start_keyservice: Callable[..., Any]) -> None:
    ks = start_keyservice("--insecure-plaintext", "--port", "0", *_secret_files(tmp_path, b"k" * 16, b"s" * 32))
    warning = ks.wait_for("plaintext gRPC without authentication")
    assert warning["level"] == "WARNING"
    address = ks.wait_for("key service listening")["address"]
    assert address.startswith("127.0.0.1:")
    channel, stub = _stub(address)
    with channel:
        assert len(stub.GetDataKey(_req("x", 32), timeout=10).data_key) == 32
    assert ks.terminate() == 0


def test_mutual_tls_process(tmp_path: Path, pki: Any, start_keyservice: Callable[..., Any]) -> None:
    ks = start_keyservice(
        "--port",
        "0",
        "--listen-host",
        "127.0.0.1",
        "--tls-cert",
        str(pki.files["server_cert_pem"]),
        "--tls-key",
        str(pki.files["server_key_pem"]),
        "--tls-ca",
        str(pki.files["ca_pem"]),
        *_secret_files(tmp_path, b"k" * 32, b"s" * 32),
    )
    address = ks.wait_for("key service listening")["address"]
    creds = grpc.ssl_channel_credentials(pki.ca_pem, pki.client_key_pem, pki.client_cert_pem)
    channel, stub = _stub(address, creds)
    with channel:
        assert len(stub.GetDataKey(_req("x", 32), timeout=10).data_key) == 32
    channel, stub = _stub(address, grpc.ssl_channel_credentials(pki.ca_pem))
    with channel, pytest.raises(grpc.RpcError):
        stub.GetDataKey(_req("x", 32), timeout=10)
    assert ks.terminate() == 0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--unix", "/tmp/x.sock", "--kms-uri", "kms://cluster-kms?key=AAAA&salt=BBBB"], "carries a secret parameter"),
        (
            ["--unix", "/tmp/x.sock", "--kms-uri", "kms://vault?address=http://127.0.0.1:1&keyName=k&token=T0KEN"],
            "carries a secret parameter",
        ),
        (["--insecure-plaintext", "--listen-host", "0.0.0.0"], "binds to loopback only"),
        (["--insecure-plaintext", "--listen-host", "10.1.2.3"], "binds to loopback only"),
    ],
)
def test_secrets_on_the_command_line_and_plaintext_off_loopback_are_refused(args: list[str], reason: str) -> None:
    res = subprocess.run([*KEYSERVICE, *args], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert reason in res.stderr
    assert "T0KEN" not in res.stderr


def test_kms_uri_file_readable_by_others_is_refused(sockdir: Path) -> None:
    from starlock.kms import MasterSecret

    uri_file = _uri_file(sockdir, MasterSecret(bytes(range(32)), bytes(range(32, 64))).to_uri(), mode=0o644)
    res = subprocess.run(
        [*KEYSERVICE, "--unix", str(sockdir / "s.sock"), "--kms-uri-file", str(uri_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    assert "readable by others" in res.stderr


def test_version_flag() -> None:
    import importlib.metadata
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "starlock.kms.keyservice", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        done.returncode == 0
        and done.stdout.strip() == f"starlock-keyservice {importlib.metadata.version('starlock-kms')}"
    )
