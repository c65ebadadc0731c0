"""Sans-IO aTLS wire pieces (reference: spec-attestation §A1): nonces, CA names, attested certificates.

Nothing here touches a socket or OpenSSL; the handshake module feeds it bytes and certificates.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
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
    "CertificateKey",
    "PeerAttestation",
    "ca_name_der",
    "decode_sni_nonce",
    "encode_nonce",
    "make_certificate",
    "make_certificate_der",
    "nonce_from_ca_names",
    "peer_key_hash",
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

    @property
    def warnings(self) -> tuple[str, ...]:
        """The validator's warn-only findings (also logged at WARNING for every connection)."""
        return self.result.warnings


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


_SUBJECT_DER = _cn_name_der("Constellation")
#: TBSCertificate ``version [0] EXPLICIT INTEGER 2`` (v3).
_VERSION_V3_DER = b"\xa0\x03\x02\x01\x02"
#: AlgorithmIdentifier ecdsa-with-SHA256 (1.2.840.10045.4.3.2), no parameters (RFC 5758).
_ECDSA_SHA256_DER = b"\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02"
#: The TBSCertificate's fixed fields: version; (serial); signature algorithm and issuer name.
_TBS_HEAD = _VERSION_V3_DER
_TBS_ALG_ISSUER = _ECDSA_SHA256_DER + _SUBJECT_DER
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def public_key_hash(key: ec.EllipticCurvePublicKey | x509.Certificate) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: the user data bound by the attestation document."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


@attrs.frozen
class CertificateKey:
    """A certificate key with what every certificate for it repeats: its DER SPKI and that SPKI's SHA-256."""

    private_key: ec.EllipticCurvePrivateKey
    spki_der: bytes
    spki_hash: bytes
    subject_spki_der: bytes  # the TBSCertificate's subject name and SPKI, which follow the validity

    @classmethod
    def of(cls, key: ec.EllipticCurvePrivateKey) -> CertificateKey:
        public = key.public_key()
        spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key, spki, hashlib.sha256(spki).digest(), _SUBJECT_DER + spki)

    @classmethod
    def generate(cls) -> CertificateKey:
        """A fresh ECDSA P-256 key (Go ``ecdsa.GenerateKey(elliptic.P256(), rand.Reader)``)."""
        return cls.of(ec.generate_private_key(ec.SECP256R1()))


@functools.lru_cache(maxsize=64)
def _oid_der(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER for a dotted string (checked by cryptography's parser first)."""
    x509.ObjectIdentifier(dotted)  # raises ValueError on a malformed OID
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _time_der(moment: datetime.datetime) -> bytes:
    """RFC 5280 Time to the second (sub-second digits dropped): UTCTime through 2049, then GeneralizedTime."""
    # A naive datetime means UTC, as in cryptography's CertificateBuilder (not local time).
    t = moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment.astimezone(datetime.UTC)
    clock = f"{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}Z".encode("ascii")
    if 1950 <= t.year < 2050:
        return _tlv(0x17, f"{t.year % 100:02d}".encode("ascii") + clock)
    return _tlv(0x18, f"{t.year:04d}".encode("ascii") + clock)


_VALIDITY_SECONDS = int(CERT_VALIDITY.total_seconds())
_UTC_TIME_FORMAT = "\x17\x0d%y%m%d%H%M%SZ"  # UTCTime, 13 characters


def _validity_der(now: datetime.datetime | None) -> bytes:
    """Validity { notBefore now - 2 h, notAfter now + 2 h }, to the second."""
    if now is None:  # the per-connection path: the clock through time.gmtime, no datetime arithmetic
        second = int(time.time())
        before, after = time.gmtime(second - _VALIDITY_SECONDS), time.gmtime(second + _VALIDITY_SECONDS)
        if before.tm_year >= 1950 and after.tm_year < 2050:
            both = time.strftime(_UTC_TIME_FORMAT, before) + time.strftime(_UTC_TIME_FORMAT, after)
            return b"\x30\x1e" + both.encode("ascii")
        now = datetime.datetime.fromtimestamp(second, datetime.UTC)
    return _tlv(0x30, _time_der(now - CERT_VALIDITY) + _time_der(now + CERT_VALIDITY))


def make_certificate_der(
    key: CertificateKey | ec.EllipticCurvePrivateKey,
    issuer: Issuer | None,
    peer_nonce: bytes,
    *,
    now: datetime.datetime | None = None,
    max_extension_size: int = MAX_EXTENSION_SIZE,
) -> bytes:
    """The attested certificate (Go ``getCertificate``) for the peer's nonce, DER; no extension without issuer.

    The TBSCertificate is written directly (the encoding cryptography's ``CertificateBuilder`` gives
    for the same fields, which a test checks byte for byte) and signed with the key, ECDSA-with-SHA256:
    building it through the generic builder cost several times the signature itself. Everything but
    the serial, the validity, the document and the signature is precomputed.
    """
    cert_key = key if isinstance(key, CertificateKey) else CertificateKey.of(key)
    serial = 0
    while serial == 0:  # uniform in [1, 2^128): serial 0 is refused by many parsers, Go's range includes it
        serial = secrets.randbelow(1 << 128)
    serial_bytes = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # minimal positive INTEGER
    parts = [_TBS_HEAD, bytes((0x02, len(serial_bytes))), serial_bytes, _TBS_ALG_ISSUER, _validity_der(now)]
    parts.append(cert_key.subject_spki_der)
    if issuer is not None:
        document = issuer.issue(cert_key.spki_hash, peer_nonce)
        if len(document) > max_extension_size:
            raise AtlsConfigError(
                f"{issuer.variant.value} issuer produced a {len(document)}-byte document, more than the aTLS "
                f"extension limit {max_extension_size}"
            )
        # [3] EXPLICIT Extensions { Extension { extnID, extnValue OCTET STRING } } (critical FALSE: omitted)
        parts.append(_tlv(0xA3, _tlv(0x30, _tlv(0x30, _oid_der(issuer.variant.oid) + _tlv(0x04, document)))))
    tbs = _tlv(0x30, b"".join(parts))
    signature = cert_key.private_key.sign(tbs, _ECDSA_SHA256)
    return _tlv(0x30, b"".join((tbs, _ECDSA_SHA256_DER, _tlv(0x03, b"\x00" + signature))))


def make_certificate(
    key: CertificateKey | ec.EllipticCurvePrivateKey,
    issuer: Issuer | None,
    peer_nonce: bytes,
    *,
    now: datetime.datetime | None = None,
    max_extension_size: int = MAX_EXTENSION_SIZE,
) -> x509.Certificate:
    """:func:`make_certificate_der`, parsed."""
    der = make_certificate_der(key, issuer, peer_nonce, now=now, max_extension_size=max_extension_size)
    return x509.load_der_x509_certificate(der)


#: The DER SPKI of every P-256 key up to its 64-byte uncompressed point (what Go's MarshalPKIXPublicKey writes).
_P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004")
_P256_SPKI_SIZE = len(_P256_SPKI_PREFIX) + 64


def _tlv_end(der: bytes, pos: int) -> tuple[int, int]:
    """(start of the contents, end) of the DER TLV at ``pos``, single-byte tags only."""
    first = der[pos + 1]
    if first < 0x80:
        return pos + 2, pos + 2 + first
    count = first & 0x7F
    start = pos + 2 + count
    return start, start + int.from_bytes(der[pos + 2 : start], "big")


def _spki_slice(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo TLV of a certificate cryptography has already parsed (so well-formed DER)."""
    tbs, _ = _tlv_end(der, 0)  # Certificate -> TBSCertificate
    pos, _ = _tlv_end(der, tbs)
    if der[pos] == 0xA0:  # [0] version
        pos = _tlv_end(der, pos)[1]
    for _field in range(5):  # serialNumber, signature, issuer, validity, subject
        pos = _tlv_end(der, pos)[1]
    return der[pos : _tlv_end(der, pos)[1]]


def peer_key_hash(der: bytes, cert: x509.Certificate) -> bytes:
    """:func:`public_key_hash` of a parsed certificate, from its DER ``der``.

    A P-256 key in Go's canonical encoding (uncompressed point) is hashed as the bytes received,
    which are then exactly what re-encoding the key would give; anything else is re-encoded.
    """
    spki = _spki_slice(der)
    if len(spki) == _P256_SPKI_SIZE and spki.startswith(_P256_SPKI_PREFIX):
        return hashlib.sha256(spki).digest()
    return public_key_hash(cert)


def _check_certificate(der: bytes, now: datetime.datetime) -> x509.Certificate:
    if len(der) > MAX_CERTIFICATE_SIZE:
        raise CertificateError(f"peer certificate is {len(der)} bytes, more than the limit {MAX_CERTIFICATE_SIZE}")
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = list(cert.extensions)
    except x509.InvalidVersion as exc:  # not a ValueError: e.g. version 127
        raise CertificateError(f"peer certificate has an unknown X.509 version {exc.parsed_version}") from None
    except ValueError as exc:
        raise CertificateError(f"peer certificate is malformed: {exc}") from None
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        raise CertificateError("peer certificate's self-signature does not verify") from None
    except UnsupportedAlgorithm as exc:  # an unknown public-key or signature algorithm
        raise CertificateError(f"peer certificate uses an unsupported algorithm: {exc}") from None
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
    try:
        key_hash = peer_key_hash(der, cert)
    except (ValueError, IndexError, UnsupportedAlgorithm) as exc:  # parsed and verified, so unexpected
        raise CertificateError(f"peer certificate's public key cannot be hashed: {type(exc).__name__}") from None
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
