"""Sans-IO wire pieces: nonce encodings and the CA name, with property tests for the parsers."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from starlock.atls import DummyIssuer, DummyValidator, NonceError, UserDataMismatch
from starlock.atls._wire import (
    CERT_VALIDITY,
    MAX_SNI_LENGTH,
    CertificateKey,
    _oid_der,
    _spki_slice,
    _tlv,
    ca_name_der,
    decode_sni_nonce,
    encode_nonce,
    make_certificate_der,
    nonce_from_ca_names,
    peer_key_hash,
    public_key_hash,
    verify_peer_certificate,
)


def test_ca_name_is_printable_string_cn() -> None:
    nonce = bytes(range(32))
    der = ca_name_der(nonce)
    cn = encode_nonce(nonce).encode()
    # SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, PrintableString } } } as Go writes it
    assert der == bytes([0x30, len(cn) + 11, 0x31, len(cn) + 9, 0x30, len(cn) + 7]) + b"\x06\x03\x55\x04\x03" + (
        bytes([0x13, len(cn)]) + cn
    )
    assert nonce_from_ca_names([x509.Name.from_bytes(der)]) == nonce


def test_ca_list_must_hold_one_name() -> None:
    name = x509.Name.from_bytes(ca_name_der(b"\x01" * 32))
    with pytest.raises(NonceError, match="unexpected acceptableCAs length: expected 1, got 2"):
        nonce_from_ca_names([name, name])
    with pytest.raises(NonceError, match="got 0"):
        nonce_from_ca_names([])


def test_sni_roundtrip() -> None:
    nonce = b"\xfb\xff" * 16  # base64 with '+' and '/'
    assert decode_sni_nonce(encode_nonce(nonce).encode()) == nonce


@given(st.binary(max_size=300))
def test_sni_parser_raises_only_nonce_errors(data: bytes) -> None:
    try:
        nonce = decode_sni_nonce(data)
    except NonceError:
        return
    assert 16 <= len(nonce) <= 64 and len(data) <= MAX_SNI_LENGTH
    assert base64.b64encode(nonce) == data


@given(st.text(max_size=200))
def test_ca_name_parser_raises_only_nonce_errors(cn: str) -> None:
    try:
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    except ValueError:
        return
    with contextlib.suppress(NonceError):
        nonce_from_ca_names([name])


# --- the attested certificate, written directly as DER -------------------------------------------


def _builder_tbs(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The TBSCertificate cryptography's generic builder writes for the same fields."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_bytes(b"\x30\x18\x31\x16\x30\x14\x06\x03\x55\x04\x03\x13\x0dConstellation"))
        .issuer_name(cert.issuer)
        .public_key(key.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(key, hashes.SHA256()).tbs_certificate_bytes


@pytest.mark.parametrize(
    "now",
    [
        None,
        datetime.datetime(2049, 12, 31, 23, 30, 59, 999_999, tzinfo=datetime.UTC),  # UTCTime -> GeneralizedTime
        datetime.datetime(2031, 1, 2, 3, 4, 5, 678, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    ],
)
@pytest.mark.parametrize("attested", [True, False])
def test_certificate_der_matches_the_generic_builder(now: datetime.datetime | None, attested: bool) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = DummyIssuer(insecure=True) if attested else None
    nonce = bytes(range(32))
    for _ in range(20):  # serials of every length and top bit
        cert = x509.load_der_x509_certificate(make_certificate_der(key, issuer, nonce, now=now))
        assert cert.tbs_certificate_bytes == _builder_tbs(cert, key)
        cert.verify_directly_issued_by(cert)  # self-signed with the key, ECDSA-with-SHA256
        assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert 0 < cert.serial_number < 2**128
        moment = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
        assert abs(cert.not_valid_before_utc - (moment - CERT_VALIDITY)) <= datetime.timedelta(seconds=2)
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == 2 * CERT_VALIDITY
    if attested:
        (ext,) = cert.extensions
        assert ext.oid.dotted_string == "1.3.9900.1.1" and ext.critical is False
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        assert json.loads(ext.value.value)["UserData"] == base64.b64encode(public_key_hash(cert)).decode()
        assert json.loads(ext.value.value)["Nonce"] == base64.b64encode(nonce).decode()
    else:
        assert len(cert.extensions) == 0


def test_certificate_key_caches_its_spki_hash() -> None:
    key = CertificateKey.generate()
    cert = x509.load_der_x509_certificate(make_certificate_der(key, None, b""))
    assert key.spki_hash == public_key_hash(cert) == public_key_hash(key.private_key.public_key())
    assert (
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        == key.spki_der
    )


@pytest.mark.parametrize("oid", ["1.3.9900.1.1", "2.999.1", "1.2.840.113549.1.1.11", "0.0", "2.5.4.3"])
def test_oid_der(oid: str) -> None:
    der = _oid_der(oid)
    ext = x509.load_der_x509_certificate(
        make_certificate_der(ec.generate_private_key(ec.SECP256R1()), _OidIssuer(oid), b"")
    ).extensions[0]
    assert ext.oid.dotted_string == oid and der[0] == 0x06


class _OidIssuer:
    def __init__(self, oid: str) -> None:
        self.variant = type("V", (), {"oid": oid, "value": "test"})()

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        return b"doc"


def _spki(key: ec.EllipticCurvePublicKey, fmt: serialization.PublicFormat) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, fmt)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_peer_key_hash_is_the_hash_of_the_reencoded_key(curve: ec.EllipticCurve) -> None:
    for _ in range(10):
        key = ec.generate_private_key(curve)
        der = make_certificate_der(key, DummyIssuer(insecure=True), b"\x01" * 32)
        cert = x509.load_der_x509_certificate(der)
        assert peer_key_hash(der, cert) == public_key_hash(cert)
        assert _spki_slice(der) == _spki(key.public_key(), serialization.PublicFormat.SubjectPublicKeyInfo)


def test_peer_key_hash_ignores_a_spki_lookalike_before_the_key() -> None:
    """A canonical P-256 SPKI planted in the subject name is not mistaken for the certificate's key."""
    planted = _spki(
        ec.generate_private_key(ec.SECP256R1()).public_key(), serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    unique_id = _tlv(0x30, b"\x06\x03\x55\x04\x2d" + _tlv(0x03, b"\x00" + planted))  # x500UniqueIdentifier
    name = x509.Name.from_bytes(_tlv(0x30, _tlv(0x31, unique_id)))
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + CERT_VALIDITY)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    der = cert.public_bytes(serialization.Encoding.DER)
    assert planted in der and der.index(planted) < der.index(_spki_slice(der))
    assert peer_key_hash(der, cert) == public_key_hash(key.public_key())


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_dummy_document_is_upstreams_json(user_data: bytes, nonce: bytes) -> None:
    """Go's json.Marshal of FakeIssuer's struct: {"UserData": b64, "Nonce": b64}, no spaces."""
    expected = {"UserData": base64.b64encode(user_data).decode(), "Nonce": base64.b64encode(nonce).decode()}
    document = _DUMMY_ISSUER.issue(user_data, nonce)
    assert document == json.dumps(expected, separators=(",", ":")).encode()
    assert json.loads(document) == expected


_DUMMY_ISSUER = DummyIssuer(insecure=True)


class _FixedIssuer:
    """An issuer whose document is ``size`` bytes, to hit every DER length form."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.variant = DummyIssuer(insecure=True).variant

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        return b"\xab" * self.size


_SERIALS = [1, 0x7F, 0x80, 0xFF, 0x100, 0x8000, (1 << 120) - 1, 1 << 127, (1 << 128) - 1, 0xFF << 100]
_SIZES = [0, 1, 127, 128, 255, 256, 65535, 65536, 96 * 1024]


@pytest.mark.parametrize("serial", _SERIALS, ids=hex)
def test_certificate_der_edge_cases_match_the_generic_builder(serial: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """INTEGER encoding of serials with the top bit set or leading zero bytes, and every length form
    of the extension up to the 96 KiB bound, byte for byte against cryptography's builder."""
    import starlock.atls._wire as wire

    key = ec.generate_private_key(ec.SECP256R1())
    monkeypatch.setattr(wire.secrets, "randbelow", lambda _bound: serial)
    for size in _SIZES:
        cert = x509.load_der_x509_certificate(make_certificate_der(key, _FixedIssuer(size), bytes(32)))
        assert cert.serial_number == serial
        assert cert.tbs_certificate_bytes == _builder_tbs(cert, key)
        cert.verify_directly_issued_by(cert)
        (ext,) = cert.extensions
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        assert len(ext.value.value) == size


def test_naive_time_means_utc_as_in_the_generic_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")  # a local zone that is not UTC
    time.tzset()
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        naive = datetime.datetime(2031, 1, 2, 3, 4, 5)
        cert = x509.load_der_x509_certificate(make_certificate_der(key, None, bytes(32), now=naive))
        assert cert.not_valid_before_utc == naive.replace(tzinfo=datetime.UTC) - CERT_VALIDITY
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("padding", [100, 300], ids=["length-0x81", "length-0x82"])
def test_spki_slice_skips_names_with_long_form_lengths(padding: int) -> None:
    """Names of 128+ bytes take DER's long-form lengths (one and two length bytes): the slice still
    lands on the certificate's own key, not on a canonical P-256 SPKI planted in the name."""
    planted = _spki(
        ec.generate_private_key(ec.SECP256R1()).public_key(), serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    unique_id = _tlv(0x30, b"\x06\x03\x55\x04\x2d" + _tlv(0x03, b"\x00" + planted))  # x500UniqueIdentifier
    organization = _tlv(0x30, b"\x06\x03\x55\x04\x0a" + _tlv(0x0C, b"o" * padding))
    name_der = _tlv(0x30, _tlv(0x31, organization) + _tlv(0x31, unique_id))
    assert name_der[1] == (0x81 if padding < 200 else 0x82)
    name = x509.Name.from_bytes(name_der)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + CERT_VALIDITY)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    der = cert.public_bytes(serialization.Encoding.DER)
    assert _spki_slice(der) == _spki(key.public_key(), serialization.PublicFormat.SubjectPublicKeyInfo)
    assert peer_key_hash(der, cert) == public_key_hash(key.public_key())


def _hybrid_key(key: ec.EllipticCurvePrivateKey) -> CertificateKey:
    """``key`` whose certificates carry its point in X9.62 hybrid form (0x06/0x07, 91 bytes like the
    canonical form, which OpenSSL parses but Go never writes)."""
    canonical = CertificateKey.of(key)
    y = key.public_key().public_numbers().y
    hybrid = canonical.spki_der[:26] + bytes([0x06 | (y & 1)]) + canonical.spki_der[27:]
    assert len(hybrid) == len(canonical.spki_der) and hybrid != canonical.spki_der
    return attrs.evolve(
        canonical, subject_spki_der=canonical.subject_spki_der.replace(canonical.spki_der, hybrid), spki_der=hybrid
    )


def test_peer_key_hash_of_a_non_canonical_point_is_the_canonical_keys() -> None:
    """The bound hash is the key's, whatever point encoding the peer chose: a 91-byte P-256 SPKI in
    hybrid form is re-encoded, not hashed as received."""
    key = ec.generate_private_key(ec.SECP256R1())
    hybrid = _hybrid_key(key)
    der = make_certificate_der(hybrid, None, b"")
    cert = x509.load_der_x509_certificate(der)
    assert _spki_slice(der) == hybrid.spki_der
    assert peer_key_hash(der, cert) == public_key_hash(key.public_key()) == CertificateKey.of(key).spki_hash
    assert peer_key_hash(der, cert) != hashlib.sha256(hybrid.spki_der).digest()


def test_document_bound_to_the_received_hybrid_spki_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    hybrid = _hybrid_key(key)
    nonce = bytes(range(32))
    validators = {_DUMMY_ISSUER.variant.oid: DummyValidator(insecure=True)}
    # bound to the canonical key's hash (what every Go and Starlock issuer writes): accepted
    peer = verify_peer_certificate(make_certificate_der(hybrid, _DUMMY_ISSUER, nonce), nonce, validators)
    assert peer is not None and peer.public_key_hash == CertificateKey.of(key).spki_hash
    # bound to the hash of the bytes as received: not the key's hash, refused
    as_received = attrs.evolve(hybrid, spki_hash=hashlib.sha256(hybrid.spki_der).digest())
    with pytest.raises(UserDataMismatch, match="certificate hash does not match user data"):
        verify_peer_certificate(make_certificate_der(as_received, _DUMMY_ISSUER, nonce), nonce, validators)


def test_empty_ca_name_cn_is_no_nonce() -> None:
    empty_cn = b"\x30\x0b\x31\x09\x30\x07\x06\x03\x55\x04\x03\x13\x00"
    with pytest.warns(UserWarning, match="length"):
        name = x509.Name.from_bytes(empty_cn)  # cryptography parses it, with a warning
    with pytest.raises(NonceError, match="server sent no nonce: the acceptable CA's CN is empty"):
        nonce_from_ca_names([name])
