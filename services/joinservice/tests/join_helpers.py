"""Node-side helpers: what a joining node sends (CSR, SSH host key) and an aTLS client for it."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from starlock.atls import ClientConfig, DummyIssuer
from starlock.atls.rpc import attested_channel
from starlock.joinproto import join_pb2, join_pb2_grpc


def kubelet_csr(node: str, ips: tuple[str, ...] = ("192.0.2.21",), org: str = "system:nodes") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
            ]
        )
    )
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    sans.append(x509.DNSName(f"{node}.example.internal"))
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def host_key() -> tuple[ed25519.Ed25519PrivateKey, bytes]:
    """A host key and its SSH wire-format public key (``ssh.PublicKey.Marshal()``)."""
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = b"ssh-ed25519"
    return key, len(name).to_bytes(4, "big") + name + len(raw).to_bytes(4, "big") + raw


def join_request(node: str, *, control_plane: bool = False, **overrides: Any) -> join_pb2.IssueJoinTicketRequest:
    fields: dict[str, Any] = {
        "disk_uuid": str(uuid.uuid4()),
        "certificate_request": kubelet_csr(node),
        "is_control_plane": control_plane,
        "host_public_key": host_key()[1],
        "host_certificate_principals": ["192.0.2.21", node],
    }
    fields.update(overrides)
    return join_pb2.IssueJoinTicketRequest(**fields)


@contextmanager
def join_stub(port: int, issuer: Any = None) -> Iterator[join_pb2_grpc.APIStub]:
    config = ClientConfig(issuer=issuer or DummyIssuer(insecure=True))
    with attested_channel(f"127.0.0.1:{port}", config) as channel:
        yield join_pb2_grpc.APIStub(channel)
