"""The emergency SSH CA and host certificates (spec §2.2 steps 3-6, §2.8).

The CA key is the Ed25519 key whose seed is the 32-byte ``ca_emergency_ssh`` data key. Host
certificates: type host, the principals, valid after = now, valid before = forever
(2^64 - 1), key id = first principal, serial 0, no options or extensions, random nonce.
"""

from __future__ import annotations

import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from starlock.joinservice.errors import BadRequest

__all__ = ["FOREVER", "authorized_key_line", "ca_from_seed", "host_certificate", "parse_host_public_key"]

FOREVER = 2**64 - 1
MAX_HOST_KEY_BYTES = 16 * 1024
MAX_PRINCIPALS = 256

SshPublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def ca_from_seed(seed: bytes) -> ed25519.Ed25519PrivateKey:
    if len(seed) != 32:
        raise ValueError("the SSH CA seed is 32 bytes")
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def authorized_key_line(key: ed25519.Ed25519PublicKey) -> bytes:
    """Go ``ssh.MarshalAuthorizedKey``: ``<type> <base64>\\n``, no comment."""
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n"


def _ssh_string(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(data):
        raise BadRequest("host_public_key is truncated")
    size = int.from_bytes(data[offset : offset + 4], "big")
    end = offset + 4 + size
    if end > len(data):
        raise BadRequest("host_public_key is truncated")
    return data[offset + 4 : end], end


def parse_host_public_key(wire: bytes) -> SshPublicKey:
    """An SSH wire-format public key (RFC 4253, ``ssh.PublicKey.Marshal()``)."""
    if len(wire) > MAX_HOST_KEY_BYTES:
        raise BadRequest(f"host_public_key is larger than {MAX_HOST_KEY_BYTES} bytes")
    key_type, _ = _ssh_string(wire, 0)
    try:
        text = key_type.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("host_public_key has a non-ASCII key type") from None
    if not text or not text.replace("-", "").replace("@", "").replace(".", "").isalnum():
        raise BadRequest("host_public_key has a malformed key type")
    try:
        key = serialization.load_ssh_public_key(text.encode() + b" " + _b64(wire))
    except (ValueError, TypeError):
        raise BadRequest("host_public_key is not an SSH public key") from None
    except Exception as exc:  # UnsupportedAlgorithm for key types cryptography does not know
        raise BadRequest(f"host_public_key has an unsupported key type ({type(exc).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise BadRequest("host_public_key must be Ed25519, ECDSA or RSA")
    return key


def _b64(data: bytes) -> bytes:
    import base64

    return base64.b64encode(data)


def host_certificate(
    host_key: SshPublicKey, principals: list[str], ca: ed25519.Ed25519PrivateKey, now: datetime.datetime
) -> bytes:
    """The signed host certificate as an authorized_keys line."""
    if not principals:
        raise BadRequest("no principal for the SSH host certificate")
    if len(principals) > MAX_PRINCIPALS:
        raise BadRequest(f"more than {MAX_PRINCIPALS} host certificate principals")
    builder = (
        serialization.SSHCertificateBuilder()
        .public_key(host_key)
        .type(serialization.SSHCertificateType.HOST)
        .valid_principals([p.encode() for p in principals])
        .valid_after(int(now.timestamp()))
        .valid_before(FOREVER)
        .key_id(principals[0].encode())
        .serial(0)
    )
    cert = builder.sign(ca)
    return cert.public_bytes() + b"\n"
