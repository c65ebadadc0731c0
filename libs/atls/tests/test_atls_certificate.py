"""The peer-certificate check (``verify_peer_certificate``) on hand-built certificates.

* Fuzzing found two untyped errors: a certificate with version 127 raised ``InvalidVersion`` and a
  self-signed one with an unknown public-key algorithm ``UnsupportedAlgorithm``. The public
  function raises ``AtlsError`` subclasses only (checked here on those two and on mutated DER).
* Mutation testing found the key binding, notBefore and unknown critical extensions untested:
  each test below fails when its check is weakened (user data compared as a prefix of the key
  hash or the other way round, an empty value accepted, a comparison dropped, ``<`` for ``<=``).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from starlock.atls import AtlsError, CertificateError, DummyIssuer, UserDataMismatch
from starlock.atls._wire import CERT_VALIDITY, CertificateKey, make_certificate_der, verify_peer_certificate
from starlock.attestation.interfaces import Check, CheckStatus, ValidationResult
from starlock.attestation.variant import Variant

NONCE = b"\x01" * 32
NOW = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
DUMMY_OID = Variant.DUMMY.oid


def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


ECDSA_SHA256 = _tlv(0x30, bytes.fromhex("06082a8648ce3d040302"))
NAME = _tlv(0x30, _tlv(0x31, _tlv(0x30, bytes.fromhex("0603550403") + _tlv(0x13, b"Constellation"))))
VALIDITY = _tlv(0x30, _tlv(0x17, b"310506050809Z") + _tlv(0x17, b"310506090809Z"))  # NOW -/+ 2 h


def _certificate(version: bytes, spki: bytes, key: ec.EllipticCurvePrivateKey | None) -> bytes:
    """A certificate written field by field; signed with ``key`` (or a made-up signature)."""
    tbs = _tlv(0x30, version + _tlv(0x02, b"\x01") + ECDSA_SHA256 + NAME + VALIDITY + NAME + spki)
    if key is not None:
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    else:
        signature = _tlv(0x30, _tlv(0x02, b"\x01" * 32) + _tlv(0x02, b"\x02" * 32))
    return _tlv(0x30, tbs + ECDSA_SHA256 + _tlv(0x03, b"\x00" + signature))


def _p256_spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class _Validator:
    """Accepts any document and returns the given user data (stands for any real validator)."""

    variant = Variant.DUMMY

    def __init__(self, user_data: bytes) -> None:
        self.user_data = user_data

    def validate(self, document: bytes, nonce: bytes) -> ValidationResult:
        return ValidationResult(Variant.DUMMY, self.user_data, (Check("nonce", CheckStatus.PASS),))


# --- untyped errors found by fuzzing ---------------------------------------------------------


@pytest.mark.parametrize("validators", [{}, {DUMMY_OID: _Validator(b"")}], ids=["unattested", "attested"])
def test_version_127(validators: dict[str, _Validator]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = _certificate(_tlv(0xA0, _tlv(0x02, b"\x7f")), _p256_spki(key), key)
    with pytest.raises(CertificateError, match=r"unknown X\.509 version 127"):
        verify_peer_certificate(der, NONCE, validators, now=NOW)


@pytest.mark.parametrize("validators", [{}, {DUMMY_OID: _Validator(b"")}], ids=["unattested", "attested"])
def test_unknown_public_key_algorithm(validators: dict[str, _Validator]) -> None:
    unknown = _tlv(0x06, bytes.fromhex("2b0601040186ea1f01"))  # 1.3.6.1.4.1.99999.1
    spki = _tlv(0x30, _tlv(0x30, unknown) + _tlv(0x03, b"\x00" + os.urandom(32)))
    der = _certificate(_tlv(0xA0, _tlv(0x02, b"\x02")), spki, None)
    with pytest.raises(CertificateError, match="unsupported algorithm"):
        verify_peer_certificate(der, NONCE, validators, now=NOW)


def test_the_hand_built_certificate_itself_is_accepted() -> None:
    """The builder above is right: with version 3 and a P-256 key the same certificate passes."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = _certificate(_tlv(0xA0, _tlv(0x02, b"\x02")), _p256_spki(key), key)
    assert verify_peer_certificate(der, NONCE, {}, now=NOW) is None


_ATTESTED = make_certificate_der(CertificateKey.generate(), DummyIssuer(insecure=True), NONCE, now=NOW)


@given(st.data())
def test_mutated_certificates_raise_only_atls_errors(data: st.DataObject) -> None:
    der = bytearray(_ATTESTED)
    for _ in range(data.draw(st.integers(1, 3))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    validators = {DUMMY_OID: _Validator(data.draw(st.binary(max_size=40)))}
    with contextlib.suppress(AtlsError):  # anything else fails the test
        verify_peer_certificate(bytes(der), NONCE, validators, now=NOW)


# --- the key binding -------------------------------------------------------------------------

_KEY = CertificateKey.generate()
_DER = make_certificate_der(_KEY, DummyIssuer(insecure=True), NONCE, now=NOW)
_HASH = hashlib.sha256(_KEY.spki_der).digest()


def test_user_data_equal_to_the_key_hash_is_accepted() -> None:
    peer = verify_peer_certificate(_DER, NONCE, {DUMMY_OID: _Validator(_HASH)}, now=NOW)
    assert peer is not None and peer.public_key_hash == _HASH


@pytest.mark.parametrize(
    "user_data",
    [b"", _HASH[:1], _HASH[:16], _HASH[:-1], _HASH + b"\x00", _HASH + _HASH, b"\x00" + _HASH[:-1], bytes(32)],
    ids=["empty", "one-byte-prefix", "half", "truncated", "key-hash-plus-byte", "doubled", "shifted", "zeros"],
)
def test_user_data_other_than_the_key_hash_is_refused(user_data: bytes) -> None:
    with pytest.raises(UserDataMismatch, match="certificate hash does not match user data"):
        verify_peer_certificate(_DER, NONCE, {DUMMY_OID: _Validator(user_data)}, now=NOW)


# --- validity period -------------------------------------------------------------------------


def test_not_yet_valid_certificate() -> None:
    der = make_certificate_der(CertificateKey.generate(), None, NONCE, now=NOW + 3 * CERT_VALIDITY)
    with pytest.raises(CertificateError, match="is not valid at"):
        verify_peer_certificate(der, NONCE, {}, now=NOW)


def test_validity_bounds_are_inclusive() -> None:
    der = make_certificate_der(CertificateKey.generate(), None, NONCE, now=NOW)
    second = datetime.timedelta(seconds=1)
    for moment in (NOW - CERT_VALIDITY, NOW + CERT_VALIDITY):
        assert verify_peer_certificate(der, NONCE, {}, now=moment) is None
    for moment in (NOW - CERT_VALIDITY - second, NOW + CERT_VALIDITY + second):
        with pytest.raises(CertificateError, match="is not valid at"):
            verify_peer_certificate(der, NONCE, {}, now=moment)


# --- critical extensions ---------------------------------------------------------------------


def _with_extensions(*extensions: tuple[x509.ExtensionType, bool]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_bytes(NAME)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(NOW - CERT_VALIDITY).not_valid_after(NOW + CERT_VALIDITY)
    )  # fmt: skip
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")


def test_unknown_critical_extension_is_refused() -> None:
    der = _with_extensions((UNKNOWN, True))
    with pytest.raises(CertificateError, match=r"unhandled critical extensions \['1.3.6.1.4.1.99999.7'\]"):
        verify_peer_certificate(der, NONCE, {}, now=NOW)


def test_critical_attestation_extension_is_refused() -> None:
    """As in Go (x509 Verify: UnhandledCriticalExtension), even the attestation extension."""
    der = _with_extensions((x509.UnrecognizedExtension(x509.ObjectIdentifier(DUMMY_OID), b"{}"), True))
    with pytest.raises(CertificateError, match="unhandled critical extensions"):
        verify_peer_certificate(der, NONCE, {DUMMY_OID: _Validator(b"")}, now=NOW)


def test_known_critical_and_unknown_noncritical_extensions_are_accepted() -> None:
    der = _with_extensions(
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
        (UNKNOWN, False),
    )
    assert verify_peer_certificate(der, NONCE, {}, now=NOW) is None
