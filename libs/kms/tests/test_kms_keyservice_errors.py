"""Operator errors of ``starlock-keyservice`` (real processes): one JSON error line on stderr, exit 1.

No traceback and no gRPC core log line: a port in use, TLS material that does not fit together,
a socket directory that cannot be created, missing parent directories, an over-long socket path.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

KEYSERVICE = [sys.executable, "-m", "starlock.kms.keyservice"]


@pytest.fixture
def secret_flags(tmp_path: Path) -> list[str]:
    (tmp_path / "mastersecret").write_bytes(b"k" * 32)
    (tmp_path / "salt").write_bytes(b"s" * 32)
    return ["--master-secret", str(tmp_path / "mastersecret"), "--salt", str(tmp_path / "salt")]


@pytest.fixture
def used_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def _fails_cleanly(*args: str) -> dict[str, Any]:
    res = subprocess.run([*KEYSERVICE, *args], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr  # no traceback, no gRPC core line
    record: dict[str, Any] = json.loads(lines[0])
    assert record["level"] == "ERROR"
    assert res.stdout == ""
    return record


def _mtls_flags(pki: Any, tmp_path: Path, *, key: bytes | None = None, cert: bytes | None = None) -> list[str]:
    key_file, cert_file = tmp_path / "server.key", tmp_path / "server.pem"
    key_file.write_bytes(pki.server_key_pem if key is None else key)
    cert_file.write_bytes(pki.server_cert_pem if cert is None else cert)
    return ["--tls-cert", str(cert_file), "--tls-key", str(key_file), "--tls-ca", str(pki.files["ca_pem"])]


def test_plaintext_port_in_use(used_port: int, secret_flags: list[str]) -> None:
    record = _fails_cleanly("--insecure-plaintext", "--port", str(used_port), *secret_flags)
    assert record["msg"] == "cannot listen"
    assert f"cannot listen on 127.0.0.1:{used_port}: Address already in use" in record["error"]


def test_mtls_port_in_use(used_port: int, pki: Any, tmp_path: Path, secret_flags: list[str]) -> None:
    flags = _mtls_flags(pki, tmp_path)
    record = _fails_cleanly("--listen-host", "127.0.0.1", "--port", str(used_port), *flags, *secret_flags)
    assert "Address already in use" in record["error"]


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("rogue key", "private key does not belong to the server certificate"),
        ("garbage key", "holds no unencrypted PEM private key"),
        ("garbage cert", "server certificate file holds no PEM certificate"),
    ],
)
def test_tls_material_that_does_not_fit(
    which: str, fragment: str, pki: Any, tmp_path: Path, secret_flags: list[str]
) -> None:
    material = {
        "rogue key": {"key": pki.rogue_key_pem},
        "garbage key": {"key": b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"},
        "garbage cert": {"cert": b"not a certificate"},
    }[which]
    flags = _mtls_flags(pki, tmp_path, **material)
    record = _fails_cleanly("--listen-host", "127.0.0.1", "--port", "0", *flags, *secret_flags)
    assert fragment in record["error"]
    assert str(tmp_path / "server.key") in record["error"]  # names the files, never their content
    assert "BEGIN" not in record["error"]
    assert pki.rogue_key_pem.decode() not in record["error"]


def test_socket_directory_that_cannot_be_created(tmp_path: Path, secret_flags: list[str]) -> None:
    (tmp_path / "a-file").write_text("")  # as root nothing else stops mkdir: a parent that is a file
    sock = tmp_path / "a-file" / "ks" / "ks.sock"
    record = _fails_cleanly("--unix", str(sock), *secret_flags)
    assert f"cannot create the socket directory {str(sock.parent)!r}: Not a directory" in record["error"]


def test_missing_parents_are_not_created(tmp_path: Path, secret_flags: list[str]) -> None:
    # e.g. the README's /run/starlock/keyservice/ks.sock on a host without /run/starlock
    (tmp_path / "run").mkdir()
    sock = tmp_path / "run" / "starlock" / "keyservice" / "ks.sock"
    record = _fails_cleanly("--unix", str(sock), *secret_flags)
    assert f"its parent {str(tmp_path / 'run' / 'starlock')!r} does not exist" in record["error"]
    assert list((tmp_path / "run").iterdir()) == []


def test_socket_path_too_long(tmp_path: Path, secret_flags: list[str]) -> None:
    record = _fails_cleanly("--unix", str(tmp_path / ("x" * 120) / "ks.sock"), *secret_flags)
    assert "is longer than 107 bytes" in record["error"]
    assert not (tmp_path / ("x" * 120)).exists()
