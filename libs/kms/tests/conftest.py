"""Fixtures: the §3.7 vectors, private socket directories, test PKI and key service processes."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, settings

VECTORS = Path(__file__).parent / "vectors" / "kms-vectors.json"

# Generation speed and per-example time depend on the load of a shared 2-core machine, not on
# the code under test: neither may fail a property test.
settings.register_profile("starlock", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("starlock")


@pytest.fixture(scope="session")
def kms_vectors() -> dict[str, Any]:
    return json.loads(VECTORS.read_text())


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short (sun_path is ~107 bytes), private (0700) directory for Unix sockets."""
    d = Path(tempfile.mkdtemp(prefix="slkms-", dir="/tmp"))
    d.chmod(0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- test PKI -------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes
    client_cert_pem: bytes
    client_key_pem: bytes
    rogue_cert_pem: bytes  # client certificate from a CA the server does not trust
    rogue_key_pem: bytes
    files: dict[str, Path] = field(default_factory=dict)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


def _pem(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca_key, rogue_ca_key = _key(), _key()
    ca = _cert("starlock test CA", ca_key, None, ca_key, ca=True)
    rogue_ca = _cert("rogue CA", rogue_ca_key, None, rogue_ca_key, ca=True)
    skey, ckey, rkey = _key(), _key(), _key()
    p = Pki(
        ca_pem=_pem(ca),
        server_cert_pem=_pem(_cert("localhost", skey, ca.subject, ca_key, ca=False, server=True)),
        server_key_pem=_pem_key(skey),
        client_cert_pem=_pem(_cert("join-service", ckey, ca.subject, ca_key, ca=False)),
        client_key_pem=_pem_key(ckey),
        rogue_cert_pem=_pem(_cert("join-service", rkey, rogue_ca.subject, rogue_ca_key, ca=False)),
        rogue_key_pem=_pem_key(rkey),
    )
    d = tmp_path_factory.mktemp("pki")
    for name in ("ca_pem", "server_cert_pem", "server_key_pem"):
        path = d / f"{name}.pem"
        path.write_bytes(getattr(p, name))
        p.files[name] = path
    return p


# --- key service subprocess -------------------------------------------------------------------


class KeyServiceProcess:
    """A real ``starlock-keyservice`` process; collects every line of stdout and stderr."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stderr) if line.strip()]

    def wait_for(self, msg: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stderr):
                if msg in line:
                    rec: dict[str, Any] = json.loads(line)
                    return rec
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no log line {msg!r}; rc={self.proc.poll()} stderr={''.join(self.stderr)[-2000:]}")

    def terminate(self, timeout: float = 30.0, *, signal_sent: bool = False) -> int:
        """SIGTERM (unless already sent) and wait; returns the exit status."""
        if not signal_sent and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)


KEYSERVICE = [sys.executable, "-m", "starlock.kms.keyservice"]


@pytest.fixture
def start_keyservice() -> Iterator[Any]:
    started: list[KeyServiceProcess] = []

    def start(*args: str, argv0: list[str] | None = None, env: dict[str, str] | None = None) -> KeyServiceProcess:
        p = KeyServiceProcess([*(argv0 or KEYSERVICE), *args], env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
