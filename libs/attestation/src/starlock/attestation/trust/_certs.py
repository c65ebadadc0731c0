"""Loading X.509 certificates from untrusted bytes, naming them, and checking one link of a chain.

Everything here is a pure function of its inputs (bytes, certificates, a time): no files, no
network, no clock. The AMD quirks of ``reference/spec-attestation.md`` §2.5 are handled here:

* VCEK/VLEK certificates carry serial number 0. ``cryptography`` 50 still loads them but emits a
  ``CryptographyDeprecationWarning`` on load and again on every ``serial_number`` access. We
  silence exactly that warning while loading, and never read ``serial_number`` ourselves.
* The ARK/ASK/ASVK and VCEK signatures are RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48). We read
  the parameters from the DER of the certificate's ``signatureAlgorithm`` and accept only the
  profile Go's ``crypto/x509`` accepts (which Constellation relies on): SHA-256/384/512, MGF1 with
  the same hash, salt length equal to the digest length, trailer field 1.
* Google's EK CAs have common names longer than the 64 characters of RFC 5280's upper bound;
  ``cryptography`` warns (``UserWarning``) whenever their ``subject``/``issuer`` is read. Names are
  read through :func:`subject_of` / :func:`issuer_of`, which silence exactly that warning.
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from starlock.attestation.errors import CertificateChainError, ConfigError, MalformedEvidence, SignatureError

__all__ = [
    "MAX_BUNDLE_CERTS",
    "MAX_BUNDLE_SIZE",
    "check_validity",
    "describe",
    "fingerprint",
    "issuer_of",
    "load_certificates",
    "subject_cn",
    "subject_of",
    "verify_certificate_signature",
    "verify_signed_by",
]

MAX_BUNDLE_SIZE = 256 * 1024
"""Largest certificate input accepted (bytes). A KDS ``cert_chain`` is about 4.6 KiB."""

MAX_BUNDLE_CERTS = 16
"""Most certificates accepted in one input. Real chains here have at most three."""

# What cryptography raises for bad input; several of its exceptions are not ValueErrors.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_SERIAL_WARNING = r"Parsed a serial number which wasn't positive"
_NAME_LENGTH_WARNING = r"Attribute's length must be"


@contextmanager
def _quirk_warnings_silenced() -> Iterator[None]:
    # warnings.catch_warnings changes process-wide state; it is held only around a parse.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SERIAL_WARNING, category=CryptographyDeprecationWarning)
        warnings.filterwarnings("ignore", message=_NAME_LENGTH_WARNING, category=UserWarning)
        yield


def load_certificates(
    data: bytes, *, max_size: int = MAX_BUNDLE_SIZE, max_certs: int = MAX_BUNDLE_CERTS
) -> list[x509.Certificate]:
    """Parse one DER certificate or any number of concatenated PEM ``CERTIFICATE`` blocks.

    The input is untrusted: any problem (too large, too many certificates, a PEM block of another
    type, bad encoding, an unparsable name, validity or extension) raises
    :class:`~starlock.attestation.errors.MalformedEvidence`. Nothing is trusted by loading it.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidence(f"certificate data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise MalformedEvidence("certificate data: expected a PEM bundle or a DER certificate, got 0 bytes")
    if len(data) > max_size:
        raise MalformedEvidence(f"certificate data: expected at most {max_size} bytes, got {len(data)}")
    labels = _PEM_BEGIN.findall(data)
    if labels:
        others = sorted({label.decode() for label in labels if label != b"CERTIFICATE"})
        if others:
            raise MalformedEvidence(f"certificate bundle: expected only CERTIFICATE PEM blocks, found {others}")
        if len(labels) > max_certs:
            raise MalformedEvidence(f"certificate bundle: expected at most {max_certs} certificates, got {len(labels)}")
    elif data.lstrip()[:5] == b"-----":
        raise MalformedEvidence("certificate data: PEM framing without a BEGIN line")
    try:
        with _quirk_warnings_silenced():
            certs = x509.load_pem_x509_certificates(data) if labels else [x509.load_der_x509_certificate(data)]
            for cert in certs:
                _touch(cert)
    except _PARSE_ERRORS as exc:
        kind = "PEM bundle" if labels else "DER certificate"
        raise MalformedEvidence(f"certificate data: not a valid {kind}: {exc}") from exc
    if len(certs) != max(len(labels), 1):
        raise MalformedEvidence(f"certificate bundle: {len(labels)} BEGIN lines but {len(certs)} certificates parsed")
    return certs


def _touch(cert: x509.Certificate) -> None:
    """Parse the lazily decoded fields now, so later reads cannot fail on untrusted input."""
    _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc, cert.extensions)
    _ = (cert.signature_algorithm_oid, cert.tbs_certificate_bytes, cert.signature)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex (the form pins are written in)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def subject_of(cert: x509.Certificate) -> x509.Name:
    with _quirk_warnings_silenced():
        return cert.subject


def issuer_of(cert: x509.Certificate) -> x509.Name:
    with _quirk_warnings_silenced():
        return cert.issuer


def _name_text(name: x509.Name) -> str:
    with _quirk_warnings_silenced():
        return name.rfc4514_string()


def subject_cn(cert: x509.Certificate) -> str | None:
    """The first common name of the subject, or None."""
    with _quirk_warnings_silenced():
        attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def describe(cert: x509.Certificate) -> str:
    """``"CN=ARK-Milan (sha256 69d063b4…)"``-style text for error messages."""
    cn = subject_cn(cert)
    who = f"CN={cn}" if cn is not None else (_name_text(subject_of(cert)) or "<empty subject>")
    return f"{who} (sha256 {fingerprint(cert)})"


def _utc(at: datetime.datetime) -> datetime.datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(f"verification time: expected a timezone-aware datetime, got naive {at.isoformat()}")
    return at.astimezone(datetime.UTC)


def _iso(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_validity(cert: x509.Certificate, at: datetime.datetime) -> None:
    """Raise CertificateChainError unless ``not_valid_before <= at <= not_valid_after``."""
    when = _utc(at)
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if when < before:
        raise CertificateChainError(
            f"certificate {describe(cert)} is not yet valid: not-before {_iso(before)}, verification time {_iso(when)}"
        )
    if when > after:
        raise CertificateChainError(
            f"certificate {describe(cert)} has expired: not-after {_iso(after)}, verification time {_iso(when)}"
        )


def verify_signed_by(child: x509.Certificate, issuer: x509.Certificate) -> None:
    """Check one link: ``child``'s issuer name is ``issuer``'s subject and its signature verifies.

    Validity periods, CA flags and key usage are separate checks (:func:`check_validity`).
    Raises CertificateChainError (names, unsupported algorithm or key) or SignatureError.
    """
    if issuer_of(child) != subject_of(issuer):
        raise CertificateChainError(
            f"certificate {describe(child)}: issuer name {_name_text(issuer_of(child))!r} "
            f"does not match the subject {_name_text(subject_of(issuer))!r} of {describe(issuer)}"
        )
    try:
        key = issuer.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateChainError(f"issuer {describe(issuer)}: unsupported public key: {exc}") from exc
    verify_certificate_signature(child, key, issuer_label=describe(issuer))


# Hash algorithms accepted in certificate signatures (SHA-1 is refused, as by Go's crypto/x509).
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_HASH_NAMES = {"sha256", "sha384", "sha512"}
_RSA_PKCS1 = {
    x509.SignatureAlgorithmOID.RSA_WITH_SHA256.dotted_string,
    x509.SignatureAlgorithmOID.RSA_WITH_SHA384.dotted_string,
    x509.SignatureAlgorithmOID.RSA_WITH_SHA512.dotted_string,
}
_ECDSA = {
    x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256.dotted_string,
    x509.SignatureAlgorithmOID.ECDSA_WITH_SHA384.dotted_string,
    x509.SignatureAlgorithmOID.ECDSA_WITH_SHA512.dotted_string,
}
_RSA_PSS = x509.SignatureAlgorithmOID.RSASSA_PSS.dotted_string


def verify_certificate_signature(
    cert: x509.Certificate, public_key: object, *, issuer_label: str = "the given public key"
) -> None:
    """Verify ``cert``'s signature under ``public_key`` (RSA PKCS#1 v1.5, RSA-PSS or ECDSA)."""
    _check_signature_bits(cert)
    oid = cert.signature_algorithm_oid.dotted_string
    algorithm = getattr(cert.signature_algorithm_oid, "_name", oid)
    if oid not in _RSA_PKCS1 | _ECDSA | {_RSA_PSS}:
        raise CertificateChainError(
            f"certificate {describe(cert)}: signature algorithm {algorithm} ({oid}) is not accepted; "
            "expected RSA PKCS#1 v1.5, RSASSA-PSS or ECDSA with SHA-256/384/512"
        )
    try:
        digest = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise CertificateChainError(f"certificate {describe(cert)}: hash of {algorithm} is not supported") from exc
    if digest is None or digest.name not in _HASH_NAMES:
        raise CertificateChainError(f"certificate {describe(cert)}: hash of {algorithm} is not accepted")
    expected_key = "an EC" if oid in _ECDSA else "an RSA"
    try:
        if oid in _ECDSA:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise _key_mismatch(cert, issuer_label, expected_key, public_key)
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest))
        else:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise _key_mismatch(cert, issuer_label, expected_key, public_key)
            pad: padding.AsymmetricPadding = _pss_padding(cert, digest) if oid == _RSA_PSS else padding.PKCS1v15()
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, pad, digest)
    except InvalidSignature as exc:
        raise SignatureError(
            f"certificate {describe(cert)}: {algorithm} signature does not verify under {issuer_label}"
        ) from exc


def _key_mismatch(cert: x509.Certificate, issuer_label: str, expected: str, key: object) -> CertificateChainError:
    return CertificateChainError(
        f"certificate {describe(cert)}: signed with {cert.signature_algorithm_oid.dotted_string}, "
        f"which needs {expected} key, but {issuer_label} has a {type(key).__name__}"
    )


def _pss_padding(cert: x509.Certificate, digest: hashes.HashAlgorithm) -> padding.PSS:
    """Build the PSS padding from the certificate's own ``RSASSA-PSS-params`` (RFC 4055)."""
    label = f"certificate {describe(cert)}: RSASSA-PSS parameters"
    hash_oid, mgf_oid, mgf_hash_oid, salt, trailer = _parse_pss_params(_signature_algorithm_params(cert), label)
    hash_cls = _HASHES.get(hash_oid)
    if hash_cls is None or hash_cls().name != digest.name:
        raise CertificateChainError(f"{label}: hash {hash_oid} is not accepted (expected SHA-256/384/512)")
    if mgf_oid != _MGF1 or mgf_hash_oid != hash_oid:
        raise CertificateChainError(f"{label}: mask generation {mgf_oid}/{mgf_hash_oid}, expected MGF1 with {hash_oid}")
    if salt != digest.digest_size:
        raise CertificateChainError(f"{label}: salt length {salt}, expected {digest.digest_size} for {digest.name}")
    if trailer != 1:
        raise CertificateChainError(f"{label}: trailer field {trailer}, expected 1")
    return padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=salt)


# --- a minimal DER reader, only for the signatureAlgorithm parameters --------------------------

_SHA1 = "1.3.14.3.2.26"
_MGF1 = "1.2.840.113549.1.1.8"


def _tlv(data: bytes, pos: int, end: int, label: str) -> tuple[int, int, int]:
    """Return (tag, content start, content end) of the element at ``pos``."""
    if pos + 2 > end:
        raise CertificateChainError(f"{label}: truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise CertificateChainError(f"{label}: bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise CertificateChainError(f"{label}: DER element overruns its container")
    return tag, pos, pos + length


def _oid_text(body: bytes) -> str:
    parts: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    if not parts:
        return ""
    head = parts[0]
    first, second = (min(head // 40, 2), head - 40 * min(head // 40, 2))
    return ".".join(str(p) for p in [first, second, *parts[1:]])


def _outer_fields(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """DER of ``signatureAlgorithm.parameters`` and the content of ``signatureValue`` (BIT STRING)."""
    der = cert.public_bytes(Encoding.DER)
    label = f"certificate {describe(cert)}: outer structure"
    _, start, end = _tlv(der, 0, len(der), label)
    _, _, tbs_end = _tlv(der, start, end, label)
    _, alg_start, alg_end = _tlv(der, tbs_end, end, label)
    _, _, oid_end = _tlv(der, alg_start, alg_end, label)
    tag, sig_start, sig_end = _tlv(der, alg_end, end, label)
    if tag != 0x03:
        raise CertificateChainError(f"{label}: signatureValue is not a BIT STRING")
    return der[oid_end:alg_end], der[sig_start:sig_end]


def _signature_algorithm_params(cert: x509.Certificate) -> bytes:
    """DER of the outer ``signatureAlgorithm.parameters`` (cryptography checks it equals the TBS copy)."""
    return _outer_fields(cert)[0]


def _check_signature_bits(cert: x509.Certificate) -> None:
    """The signatureValue BIT STRING must have 0 unused bits.

    cryptography 50 accepts a non-zero "unused bits" octet and returns the same signature bytes,
    so without this check a re-encoded certificate (new fingerprint, same TBS) would verify.
    """
    bits = _outer_fields(cert)[1]
    if not bits or bits[0] != 0:
        unused = bits[0] if bits else "no"
        raise CertificateChainError(
            f"certificate {describe(cert)}: signatureValue BIT STRING has {unused} unused bits, expected 0"
        )


def _parse_pss_params(params: bytes, label: str) -> tuple[str, str, str, int, int]:
    hash_oid, mgf_oid, mgf_hash_oid, salt, trailer = _SHA1, _MGF1, _SHA1, 20, 1  # RFC 4055 defaults
    if not params:
        return hash_oid, mgf_oid, mgf_hash_oid, salt, trailer
    tag, pos, end = _tlv(params, 0, len(params), label)
    if tag != 0x30 or end != len(params):
        raise CertificateChainError(f"{label}: expected one SEQUENCE")
    while pos < end:
        tag, start, stop = _tlv(params, pos, end, label)
        if tag in (0xA0, 0xA1):
            alg_oid, inner = _algorithm_identifier(params, start, stop, label)
            if tag == 0xA0:
                if inner is not None:
                    raise CertificateChainError(f"{label}: hash algorithm parameters must be absent or NULL")
                hash_oid = alg_oid
            else:
                mgf_oid = alg_oid
                mgf_hash_oid = _algorithm_identifier(params, inner[0], inner[1], label)[0] if inner else ""
        elif tag in (0xA2, 0xA3):
            itag, istart, istop = _tlv(params, start, stop, label)
            if itag != 0x02 or not 0 < istop - istart <= 4:
                raise CertificateChainError(f"{label}: expected a small INTEGER in field [{tag & 0x1F}]")
            number = int.from_bytes(params[istart:istop], "big", signed=True)
            salt, trailer = (number, trailer) if tag == 0xA2 else (salt, number)
        else:
            raise CertificateChainError(f"{label}: unexpected field tag 0x{tag:02x}")
        pos = stop
    return hash_oid, mgf_oid, mgf_hash_oid, salt, trailer


def _algorithm_identifier(data: bytes, pos: int, end: int, label: str) -> tuple[str, tuple[int, int] | None]:
    """Parse ``AlgorithmIdentifier`` at ``pos``; return its OID and the span of its parameters."""
    tag, start, stop = _tlv(data, pos, end, label)
    if tag != 0x30:
        raise CertificateChainError(f"{label}: expected an AlgorithmIdentifier SEQUENCE")
    otag, ostart, ostop = _tlv(data, start, stop, label)
    if otag != 0x06:
        raise CertificateChainError(f"{label}: expected an OBJECT IDENTIFIER")
    oid = _oid_text(data[ostart:ostop])
    if ostop == stop:
        return oid, None
    ptag, pstart, pstop = _tlv(data, ostop, stop, label)
    if ptag == 0x05 and pstart == pstop and pstop == stop:  # explicit NULL parameters
        return oid, None
    return oid, (ostop, stop)
