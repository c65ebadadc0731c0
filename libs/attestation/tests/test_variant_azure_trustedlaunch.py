"""azure-trustedlaunch validator (spec-attestation §5e).

No public vector exists (MANIFEST has none; reference §8 item 10). A generated Microsoft-like
hierarchy (root CN=ameroot,DC=AME,DC=GBL → CA → AK certificate) and synthetic documents whose quotes
a generated AK signs stand in. The real AME root expired on 2026-05-24: a root with that not-after
is used to show the expired-root report.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from test_tpm_quote import ECDSA, ak_for, ecc_key, rsa_key
from test_variant_common import NOW, config_for, make_document, rsa_keys

from starlock.attestation import CheckStatus, Variant
from starlock.attestation.azure import AzureTrustedLaunchIssuer, AzureTrustedLaunchValidator
from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    MalformedEvidence,
    NonceMismatch,
    SignatureError,
    UntrustedKey,
)
from starlock.attestation.trust import AMEROOT_SHA256, TrustStore, pinned_anchor
from starlock.attestation.validators import ValidatorAdapters, validator_for

UTC = datetime.UTC
NONCE = b"azure-tl-nonce"
AME_NOT_AFTER = datetime.datetime(2026, 5, 24, 22, 57, 3, tzinfo=UTC)
BEFORE_EXPIRY = datetime.datetime(2026, 1, 15, tzinfo=UTC)


def _dn(cn: str, *dcs: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn)] + [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, d) for d in dcs]
    )


def _cert(
    subject: x509.Name,
    key: Any,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    not_after: datetime.datetime,
    path_length: int | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2016, 5, 24, 22, 52, 54, tzinfo=UTC))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    )
    usage = (False, False, False, False, False, True, True, False, False) if ca else (True,) + (False,) * 8
    builder = builder.add_extension(x509.KeyUsage(*usage), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


class Hierarchy:
    def __init__(self, root_not_after: datetime.datetime = datetime.datetime(2036, 1, 1, tzinfo=UTC)) -> None:
        root_key, ca_key = rsa_keys(2)
        self.root_name = _dn("ameroot", "AME", "GBL")
        self.ca_name = _dn("Azure Virtual TPM Root Certificate Authority 2023")
        self.root = _cert(
            self.root_name, root_key, self.root_name, root_key, ca=True, not_after=root_not_after, path_length=1
        )
        self.ca = _cert(
            self.ca_name, ca_key, self.root_name, root_key, ca=True, not_after=root_not_after, path_length=0
        )
        self.ca_key = ca_key

    def ak_cert(self, ak: Any) -> x509.Certificate:
        return _cert(
            _dn("AK"), ak, self.ca_name, self.ca_key, ca=False, not_after=datetime.datetime(2030, 1, 1, tzinfo=UTC)
        )

    def trust(self) -> TrustStore:
        store = TrustStore()
        store.add(self.root, explicitly_trusted=True)
        return store


def instance_info(ak_cert: x509.Certificate, ca: x509.Certificate) -> bytes:
    der = serialization.Encoding.DER
    return json.dumps(
        {
            "AkCert": base64.b64encode(ak_cert.public_bytes(der)).decode(),
            "CA": base64.b64encode(ca.public_bytes(der)).decode(),
        }
    ).encode()


@pytest.fixture(scope="module")
def hierarchy() -> Hierarchy:
    return Hierarchy()


def _validator(trust: TrustStore | None, at: datetime.datetime = NOW, **extra: Any) -> AzureTrustedLaunchValidator:
    return AzureTrustedLaunchValidator(config_for(Variant.AZURE_TRUSTED_LAUNCH, **extra), at=at, ak_trust=trust)


def _doc(h: Hierarchy, key: rsa.RSAPrivateKey | None = None, *, cert_key: Any = None, **kwargs: Any) -> bytes:
    key = key or rsa_key()
    info = instance_info(h.ak_cert(cert_key or key), h.ca)
    return make_document(key, nonce=NONCE, instance_info=info, **kwargs)


def test_accepted(hierarchy: Hierarchy) -> None:
    result = _validator(hierarchy.trust()).validate(_doc(hierarchy), NONCE)
    status = {c.name: c.status for c in result.checks}
    assert status["ak-certificate"] is CheckStatus.PASS
    assert status["attestation-key"] is CheckStatus.PASS
    assert status["ak-root"] is CheckStatus.WARN  # explicitly trusted, not the pinned AME root
    via_registry = validator_for(
        config_for(Variant.AZURE_TRUSTED_LAUNCH), at=NOW, adapters=ValidatorAdapters(ak_trust=hierarchy.trust())
    )
    assert via_registry.validate(_doc(hierarchy), NONCE).user_data == b"\x42" * 32


def test_ame_root_is_pinned_by_fingerprint_only() -> None:
    anchor = pinned_anchor(AMEROOT_SHA256)
    assert anchor is not None and anchor.subject_cn == "ameroot"
    other = Hierarchy()
    with pytest.raises(CertificateChainError, match="not a pinned trust anchor"):
        TrustStore(certificates=[other.root])  # a look-alike root is not the pinned AME root


def test_expired_root_reported_clearly() -> None:
    h = Hierarchy(root_not_after=AME_NOT_AFTER)
    raw = _doc(h)
    assert _validator(h.trust(), at=BEFORE_EXPIRY).validate(raw, NONCE)
    report = _validator(h.trust(), at=NOW).evaluate(raw, NONCE)
    assert isinstance(report.error, CertificateChainError)
    failed = report.checks[-1]
    assert failed.name == "ak-certificate" and failed.status is CheckStatus.FAIL
    assert "ameroot" in failed.detail
    assert "expired on 2026-05-24T22:57:03Z" in failed.detail
    assert "verification time is 2026-11-25T12:00:00Z" in failed.detail


def test_no_roots(hierarchy: Hierarchy) -> None:
    with pytest.raises(CertificateChainError, match="no Microsoft root configured"):
        _validator(None).validate(_doc(hierarchy), NONCE)


def test_other_root_rejected(hierarchy: Hierarchy) -> None:
    with pytest.raises((CertificateChainError, SignatureError)):
        _validator(Hierarchy().trust()).validate(_doc(hierarchy), NONCE)


def test_ca_not_from_the_root(hierarchy: Hierarchy) -> None:
    other = Hierarchy()
    key = rsa_key()
    info = instance_info(other.ak_cert(key), other.ca)  # other's CA, signed by other root
    raw = make_document(key, nonce=NONCE, instance_info=info)
    with pytest.raises(SignatureError):
        _validator(hierarchy.trust()).validate(raw, NONCE)


def test_ak_mismatch(hierarchy: Hierarchy) -> None:
    """ak_pub must equal the AK certificate's key."""
    raw = _doc(hierarchy, rsa_key(), cert_key=rsa_keys(1)[0])
    with pytest.raises(UntrustedKey, match="not the key of the AK certificate"):
        _validator(hierarchy.trust()).validate(raw, NONCE)


def test_ak_must_be_rsa(hierarchy: Hierarchy) -> None:
    key = ecc_key()
    info = instance_info(hierarchy.ak_cert(key), hierarchy.ca)
    from test_tpm_quote import make_quote, pcr_values

    from starlock.attestation.document import Attestation, AttestationDocument
    from starlock.attestation.vtpm import make_extra_data, make_tpm_nonce

    tpm_nonce = make_tpm_nonce(info, make_extra_data(b"u", NONCE))
    att = Attestation(
        ak_pub=ak_for(key, ECDSA).raw, quotes=(make_quote(key, extra_data=tpm_nonce, pcrs=pcr_values(0x0B)),)
    )
    raw = AttestationDocument(att, info, b"u").to_json()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(UntrustedKey, match="RSA"):
        _validator(hierarchy.trust()).validate(raw, NONCE)


def test_nonce_and_malformed_instance_info(hierarchy: Hierarchy) -> None:
    with pytest.raises(NonceMismatch):
        _validator(hierarchy.trust()).validate(_doc(hierarchy), b"other")
    for info in (b"", b"{}", b'{"AkCert": "!!", "CA": "AA=="}', b'{"AkCert": "AAAA", "CA": "AAAA"}'):
        raw = make_document(rsa_key(), nonce=NONCE, instance_info=info)
        with pytest.raises(MalformedEvidence):
            _validator(hierarchy.trust()).validate(raw, NONCE)


def test_issuer_needs_the_cloud() -> None:
    with pytest.raises(AttestationError, match="NV 0x01C101D0"):
        AzureTrustedLaunchIssuer().issue(b"u", b"n")
