"""Regressions found by the differential harness (tests/differential, README "Differences from
go-sev-guest and go-tpm-tools").

Bug 1: ``evaluate_report`` / ``verify_report`` take the AMD chain (and the signer) as
``cryptography`` certificate objects too. cryptography decodes names and extensions lazily, so an
object whose issuer, subject or extensions do not decode raised ValueError, TypeError or
DuplicateExtension from deep inside the chain checks, where go-sev-guest rejects the chain. Now
the verifier reloads such objects through ``load_certificates`` and rejects them with
MalformedEvidence.

The harness found these on the trustee-milan-vcek vector (MANIFEST, snp/trustee-milan-vcek, Expected:
ACCEPT) with one bit of its Milan ASK (other/amd-kds-roots/ask_ark_milan.pem) flipped. The offsets
below are those of the failing cases.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.snp import (
    Product,
    SigningKey,
    SnpPolicy,
    SnpVerifier,
    TcbParts,
    TcbVersion,
    evaluate_report,
    verify_report,
)
from starlock.attestation.snp.testing import SyntheticAmd, build_report, sign_report
from starlock.attestation.trust import load_certificates

AT = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
TRUSTEE_ID_KEY = bytes.fromhex(
    "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3"
)

# (offset, bit) in the DER of the Milan ASK, and the exception the lazily decoded field raised.
ASK_FLIPS = [
    pytest.param(97, 0, id="issuer-ValueError"),
    pytest.param(123, 4, id="issuer-TypeError"),
    pytest.param(254, 0, id="subject-ValueError"),
    pytest.param(934, 0, id="extensions-DuplicateExtension"),
]


def _flipped(der: bytes, offset: int, bit: int) -> bytes:
    out = bytearray(der)
    out[offset] ^= 1 << bit
    return bytes(out)


@pytest.fixture(scope="module")
def trustee(vectors: Path) -> tuple[bytes, bytes, x509.Certificate, x509.Certificate]:
    t = vectors / "snp/trustee-milan-vcek"
    ask, ark = load_certificates((vectors / "other/amd-kds-roots/ask_ark_milan.pem").read_bytes())
    return (t / "test-report.bin").read_bytes(), (t / "test-vcek.der").read_bytes(), ask, ark


@pytest.mark.parametrize(("offset", "bit"), ASK_FLIPS)
def test_undecodable_ask_object_is_rejected_not_raised(
    trustee: tuple[bytes, bytes, x509.Certificate, x509.Certificate], offset: int, bit: int
) -> None:
    report, vcek, ask, ark = trustee
    policy = SnpPolicy(accepted_id_key_digests=[TRUSTEE_ID_KEY])
    assert evaluate_report(report, vcek, [ask, ark], policy, at=AT).accepted  # the vector as given
    bad = x509.load_der_x509_certificate(_flipped(ask.public_bytes(Encoding.DER), offset, bit))
    evaluation = evaluate_report(report, vcek, [bad, ark], policy, at=AT)
    assert not evaluation.accepted
    assert isinstance(evaluation.error, MalformedEvidence)
    assert evaluation.error.check == "certificate-chain"
    with pytest.raises(MalformedEvidence):
        verify_report(report, vcek, [bad, ark], policy, at=AT)


def test_undecodable_signer_object_is_rejected_not_raised() -> None:
    """The same for the VCEK given as an object: a flip in its subject that loads lazily."""
    amd = SyntheticAmd.generate(Product.MILAN)
    tcb = TcbParts(bootloader=3, tee=0, snp=8, microcode=115)
    cert, key = amd.issue(SigningKey.VCEK, tcb)
    composed = TcbVersion.compose(tcb)
    report = sign_report(build_report(current_tcb=composed, reported_tcb=composed, chip_id=bytes(range(64))), key)
    verifier = SnpVerifier(trust_store=amd.trust_store())
    assert verifier.evaluate(report, cert, amd.chain(), at=AT).accepted
    der = cert.public_bytes(Encoding.DER)
    subject = der.find(cert.subject.public_bytes())
    assert subject > 0
    bad = None
    for offset in range(subject, subject + len(cert.subject.public_bytes())):
        try:
            candidate = x509.load_der_x509_certificate(_flipped(der, offset, 0))
        except ValueError:
            continue  # fails at once: not the lazy case
        try:
            _ = candidate.subject
        except ValueError:
            bad = candidate
            break
    assert bad is not None, "no lazily failing subject flip found"
    evaluation = SnpVerifier(trust_store=amd.trust_store()).evaluate(report, bad, amd.chain(), at=AT)
    assert not evaluation.accepted
    assert isinstance(evaluation.error, MalformedEvidence)
    assert evaluation.error.check == "signer-profile"
