"""Emergency SSH on the node (spec §2.8, §5.2 steps 8-9): the CA public key and the host
certificate, written under the SSH state directory (production: /var/run/state/ssh)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = ["install_ca_and_host_certificate", "write_private"]

HOST_KEY = "ssh_host_ed25519_key"
CA_PUB = "ssh_ca.pub"
HOST_CERT = "ssh_host_cert.pub"
FOREVER = 2**64 - 1


def write_private(path: Path, data: bytes) -> None:
    """0600, create-exclusive (never overwrites), parent directories 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def install_ca_and_host_certificate(
    ssh_dir: Path, ca_seed: bytes, principals: list[str], now: datetime.datetime
) -> None:
    """Write the CA public key; if the host key exists, sign and write its host certificate."""
    ca = ed25519.Ed25519PrivateKey.from_private_bytes(ca_seed)
    ca_line = ca.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    write_private(ssh_dir / CA_PUB, ca_line + b"\n")
    host_key_path = ssh_dir / HOST_KEY
    if not host_key_path.exists() or not principals:
        return
    host_key = serialization.load_ssh_private_key(host_key_path.read_bytes(), password=None)
    public = host_key.public_key()
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise ValueError("the SSH host key is not Ed25519")
    cert = (
        serialization.SSHCertificateBuilder()
        .public_key(public)
        .type(serialization.SSHCertificateType.HOST)
        .valid_principals([p.encode() for p in principals])
        .valid_after(int(now.timestamp()))
        .valid_before(FOREVER)
        .key_id(principals[0].encode())
        .serial(0)
        .sign(ca)
    )
    write_private(ssh_dir / HOST_CERT, cert.public_bytes() + b"\n")
