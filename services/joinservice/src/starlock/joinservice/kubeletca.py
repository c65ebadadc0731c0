"""Kubelet certificates signed by the cluster CA (spec §2.7, upstream ``kubernetesca``).

Pure: :func:`load_ca` parses the CA files, :func:`sign_kubelet_csr` checks a DER CSR and signs
it with the rules upstream uses (validity now − 2 h … now + 365 days, subject copied, key usage
digitalSignature | keyEncipherment, client and server auth, CA=false, IP SANs copied and DNS SANs
not, a random 128-bit serial, AKI from the CA's SKI).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from starlock.joinservice.errors import BadRequest, JoinServiceError

__all__ = ["NODE_PREFIX", "CertificateAuthority", "load_ca", "node_name_from_csr", "sign_kubelet_csr"]

NODE_PREFIX = "system:node:"
NODES_ORG = "system:nodes"
MAX_CSR_BYTES = 16 * 1024
CERT_VALIDITY = datetime.timedelta(days=365)
BACKDATE = datetime.timedelta(hours=2)

CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: CaKey

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.cert.subject.rfc4514_string()!r}, key=<hidden>)"


def load_ca(cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
    """The first certificate of ``cert_pem`` and the key of ``key_pem`` (SEC1, PKCS#1 or PKCS#8)."""
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except (ValueError, IndexError):
        raise JoinServiceError("cluster CA: ca.crt holds no PEM certificate") from None
    if b"-----BEGIN" not in key_pem or not any(
        marker in key_pem for marker in (b"EC PRIVATE KEY", b"RSA PRIVATE KEY", b"BEGIN PRIVATE KEY")
    ):
        raise JoinServiceError("cluster CA: ca.key is not an EC, RSA or PKCS#8 PEM private key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise JoinServiceError("cluster CA: ca.key cannot be parsed (content not shown)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise JoinServiceError(f"cluster CA: unsupported key type {type(key).__name__}")
    return CertificateAuthority(cert, key)


def _parse_csr(der: bytes) -> x509.CertificateSigningRequest:
    if not der:
        raise BadRequest("certificate_request is empty")
    if len(der) > MAX_CSR_BYTES:
        raise BadRequest(f"certificate_request is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_der_x509_csr(der)
        valid = csr.is_signature_valid
    except (ValueError, TypeError):
        raise BadRequest("certificate_request is not a DER PKCS#10 CSR") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for unknown key types
        raise BadRequest(f"certificate_request cannot be used ({type(exc).__name__})") from None
    if not valid:
        raise BadRequest("certificate_request: the CSR's self-signature does not verify")
    return csr


def _common_name(csr: x509.CertificateSigningRequest) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if len(names) == 1 else None
    if not isinstance(value, str):
        raise BadRequest("certificate_request: subject must have exactly one common name")
    return value


def node_name_from_csr(der: bytes) -> str:
    """The node name: the CSR subject CN without ``system:node:`` (upstream ``GetNodeNameFromCSR``)."""
    cn = _common_name(_parse_csr(der))
    if not cn.startswith(NODE_PREFIX) or cn == NODE_PREFIX:
        raise BadRequest(f"certificate_request: common name must start with {NODE_PREFIX!r}")
    return cn.removeprefix(NODE_PREFIX)


def csr_ip_addresses(der: bytes) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    csr = _parse_csr(der)
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        ip
        for ip in san.get_values_for_type(x509.IPAddress)
        if not isinstance(ip, ipaddress.IPv4Network | ipaddress.IPv6Network)
    ]


def sign_kubelet_csr(der: bytes, ca: CertificateAuthority, now: datetime.datetime) -> bytes:
    """Check the CSR (O=system:nodes, CN system:node:<name>) and return the signed PEM certificate."""
    csr = _parse_csr(der)
    orgs = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(orgs) != 1 or orgs[0].value != NODES_ORG:
        raise BadRequest(f"certificate_request: subject must have exactly one organization {NODES_ORG!r}")
    node_name_from_csr(der)
    public_key = csr.public_key()
    if isinstance(public_key, ed25519.Ed25519PublicKey) or not isinstance(
        public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    ):
        raise BadRequest("certificate_request: the key must be ECDSA or RSA")
    ips = csr_ip_addresses(der)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(secrets.randbits(128))
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if ips:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip) for ip in ips]), critical=False)
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
    except x509.ExtensionNotFound:
        pass
    cert = builder.sign(ca.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)
