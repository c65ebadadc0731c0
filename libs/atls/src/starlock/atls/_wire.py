"""Sans-IO aTLS wire pieces (reference: spec-attestation §A1): nonces, CA names, attested certificates.

Nothing here touches a socket or OpenSSL; the handshake module feeds it bytes and certificates.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import secrets
from collections.abc import Mapping, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from starlock.atls.errors import (
    AtlsConfigError,
    AttestationRejected,
    CertificateError,
    NoCompatibleAttestation,
    NonceError,
    UserDataMismatch,
)
from starlock.attestation.interfaces import Issuer, ValidationResult, Validator
from starlock.attestation.variant import Variant

__all__ = [
    "CERT_VALIDITY",
    "MAX_CERTIFICATE_SIZE",
    "MAX_EXTENSION_SIZE",
    "MAX_NONCE_SIZE",
    "MAX_SNI_LENGTH",
    "MIN_NONCE_SIZE",
    "NONCE_SIZE",
    "PeerAttestation",
    "ca_name_der",
    "decode_sni_nonce",
    "encode_nonce",
    "make_certificate",
    "nonce_from_ca_names",
    "public_key_hash",
    "verify_peer_certificate",
]

#: Bytes of a nonce we generate (Go ``RNGLengthDefault``).
NONCE_SIZE = 32
#: Nonces we accept from peers: at least 128 bits of freshness, at most 64 bytes.
MIN_NONCE_SIZE = 16
MAX_NONCE_SIZE = 64
#: Longest SNI accepted: standard base64 of MAX_NONCE_SIZE bytes (a Go client sends 44 characters).
MAX_SNI_LENGTH = 4 * ((MAX_NONCE_SIZE + 2) // 3)
#: Largest attestation document carried in a certificate extension (both directions). OpenSSL
#: refuses Certificate messages over 100 KiB before we see them; this bound leaves room for the
#: rest of the certificate. Real vTPM documents are 15-60 KiB.
MAX_EXTENSION_SIZE = 96 * 1024
#: Largest peer certificate parsed (DER).
MAX_CERTIFICATE_SIZE = MAX_EXTENSION_SIZE + 4096
#: Validity of attested certificates around "now" (Go: NotBefore = now - 2h, NotAfter = now + 2h).
CERT_VALIDITY = datetime.timedelta(hours=2)

_CN_OID_DER = b"\x06\x03\x55\x04\x03"
_PRINTABLE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


@attrs.frozen
class PeerAttestation:
    """What the peer proved: its variant, the validator's result and the hash of its TLS key."""

    variant: Variant
    result: ValidationResult
    public_key_hash: bytes


def encode_nonce(nonce: bytes) -> str:
    """Standard base64 with padding: the SNI value and the CA name's CN."""
    return base64.b64encode(nonce).decode("ascii")


def _decode_nonce(text: str | bytes, where: str) -> bytes:
    try:
        nonce = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        shown = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        raise NonceError(f"{where} is not standard base64: {shown[:MAX_SNI_LENGTH]!r}") from None
    if not MIN_NONCE_SIZE <= len(nonce) <= MAX_NONCE_SIZE:
        raise NonceError(
            f"{where} decodes to a {len(nonce)}-byte nonce; "
            f"Starlock requires {MIN_NONCE_SIZE} to {MAX_NONCE_SIZE} bytes"
        )
    return nonce


def decode_sni_nonce(server_name: bytes | None) -> bytes:
    """The client nonce from the SNI. Unlike upstream, an absent or empty SNI is refused."""
    if not server_name:
        raise NonceError("client sent no nonce: the SNI is empty (Starlock requires a fresh nonce per connection)")
    if len(server_name) > MAX_SNI_LENGTH:
        raise NonceError(f"SNI is {len(server_name)} bytes, more than the limit {MAX_SNI_LENGTH} for a base64 nonce")
    return _decode_nonce(server_name, "SNI")


def _der_len(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _cn_name_der(value: str) -> bytes:
    """DER RDNSequence with one CN as PrintableString (what Go writes for printable strings)."""
    raw = value.encode("ascii")
    if not set(raw) <= _PRINTABLE:
        raise ValueError("CN is not a PrintableString")
    attribute = _tlv(0x30, _CN_OID_DER + _tlv(0x13, raw))
    return _tlv(0x30, _tlv(0x31, attribute))


def ca_name_der(nonce: bytes) -> bytes:
    """The single acceptable-CA name of a server asking for client attestation: ``CN=<b64 nonce>``."""
    return _cn_name_der(encode_nonce(nonce))


def nonce_from_ca_names(names: Sequence[x509.Name]) -> bytes:
    """The server nonce from the CertificateRequest's CA list (Go ``decodeNonceFromAcceptableCAs``)."""
    if len(names) != 1:
        raise NonceError(f"unexpected acceptableCAs length: expected 1, got {len(names)}")
    for attribute in names[0]:
        if attribute.oid == NameOID.COMMON_NAME and isinstance(attribute.value, str):
            if not attribute.value:
                raise NonceError("server sent no nonce: the acceptable CA's CN is empty")
            if len(attribute.value) > MAX_SNI_LENGTH:
                raise NonceError(f"acceptable CA's CN is {len(attribute.value)} characters, more than {MAX_SNI_LENGTH}")
            return _decode_nonce(attribute.value, "acceptable CA's CN")
    raise NonceError("the acceptable CA name has no CN attribute carrying the server nonce")


_SUBJECT = x509.Name.from_bytes(_cn_name_der("Constellation"))


def public_key_hash(key: ec.EllipticCurvePublicKey | x509.Certificate) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: the user data bound by the attestation document."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def make_certificate(
    key: ec.EllipticCurvePrivateKey,
    issuer: Issuer | None,
    peer_nonce: bytes,
    *,
    now: datetime.datetime | None = None,
    max_extension_size: int = MAX_EXTENSION_SIZE,
) -> x509.Certificate:
    """The attested certificate (Go ``getCertificate``) for the peer's nonce; no extension without issuer."""
    now = now or datetime.datetime.now(datetime.UTC)
    serial = 0
    while serial == 0:  # uniform in [1, 2^128): cryptography refuses serial 0, Go's range includes it
        serial = secrets.randbelow(1 << 128)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_SUBJECT)
        .issuer_name(_SUBJECT)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - CERT_VALIDITY)
        .not_valid_after(now + CERT_VALIDITY)
    )
    if issuer is not None:
        document = issuer.issue(public_key_hash(key.public_key()), peer_nonce)
        if len(document) > max_extension_size:
            raise AtlsConfigError(
                f"{issuer.variant.value} issuer produced a {len(document)}-byte document, more than the aTLS "
                f"extension limit {max_extension_size}"
            )
        extension = x509.UnrecognizedExtension(x509.ObjectIdentifier(issuer.variant.oid), document)
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256())


def _check_certificate(der: bytes, now: datetime.datetime) -> x509.Certificate:
    if len(der) > MAX_CERTIFICATE_SIZE:
        raise CertificateError(f"peer certificate is {len(der)} bytes, more than the limit {MAX_CERTIFICATE_SIZE}")
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = list(cert.extensions)
    except ValueError as exc:
        raise CertificateError(f"peer certificate is malformed: {exc}") from None
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        raise CertificateError("peer certificate's self-signature does not verify") from None
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"peer certificate is not self-signed: {exc}") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError(
            f"peer certificate is not valid at {now.isoformat()}: valid from "
            f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()}"
        )
    critical = [e.oid.dotted_string for e in extensions if e.critical and not _known_critical(e)]
    if critical:
        raise CertificateError(f"peer certificate has unhandled critical extensions {critical}")
    return cert


def _known_critical(ext: x509.Extension[x509.ExtensionType]) -> bool:
    return isinstance(ext.value, x509.BasicConstraints | x509.KeyUsage)


def verify_peer_certificate(
    der: bytes | None,
    nonce: bytes,
    validators: Mapping[str, Validator],
    *,
    now: datetime.datetime | None = None,
) -> PeerAttestation | None:
    """Check the peer's leaf certificate for ``nonce`` (Go ``processCertificate`` + ``verifyEmbeddedReport``).

    Returns None when there are no validators (the peer is not attested), else what it proved.
    """
    if der is None:
        raise CertificateError("peer presented no certificate")
    cert = _check_certificate(der, now or datetime.datetime.now(datetime.UTC))
    key_hash = public_key_hash(cert)
    if not validators:
        return None
    seen: list[str] = []
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        seen.append(oid)
        validator = validators.get(oid)
        if validator is None:
            continue
        if not isinstance(ext.value, x509.UnrecognizedExtension):
            raise CertificateError(f"extension {oid} is not an attestation document")
        document = ext.value.value
        if len(document) > MAX_EXTENSION_SIZE:
            raise CertificateError(
                f"attestation extension {oid} is {len(document)} bytes, more than the limit {MAX_EXTENSION_SIZE}"
            )
        try:
            result = validator.validate(document, nonce)
        except Exception as exc:  # a validator's failure (or bug) rejects the peer, with its reason
            raise AttestationRejected(validator.variant, exc) from exc
        if result.user_data != key_hash:
            raise UserDataMismatch(
                f"certificate hash does not match user data: certificate key hash {key_hash.hex()}, "
                f"{validator.variant.value} document user data {result.user_data.hex()[:128]}"
            )
        return PeerAttestation(variant=validator.variant, result=result, public_key_hash=key_hash)
    raise NoCompatibleAttestation(seen, sorted(validators))
