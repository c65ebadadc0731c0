"""gcp-sev-snp (spec-attestation §5d). No public gcp-sev-snp document exists in the vectors: a
synthetic SNP hierarchy (snp.testing) signs a report whose REPORT_DATA is extraData ‖ 0^32, and a
generated AK signs the quotes; the AK is trusted through a GCE API stand-in or an AK certificate.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from test_tpm_quote import rsa_key
from test_variant_common import make_document, rsa_keys
from test_variant_gcp_es import INSTANCE, _google_like, _StaticIdentity

from starlock.attestation import CheckStatus, Variant, load_attestation_config
from starlock.attestation.errors import AttestationError, MalformedEvidence, NonceMismatch, UntrustedKey
from starlock.attestation.gcp import GcpSevSnpIssuer, GcpSevSnpValidator, expected_report_data
from starlock.attestation.validators import ValidatorAdapters, validator_for
from starlock.attestation.vtpm import make_extra_data

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
NONCE = b"gcp-snp-nonce"
USER_DATA = b"\x42" * 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def amd() -> Any:
    from starlock.attestation.snp.testing import SyntheticAmd

    return SyntheticAmd.generate()


def _info(amd: Any, report_data: bytes, *, with_ask: bool = True) -> bytes:
    from starlock.attestation.snp import SigningKey, TcbParts, TcbVersion
    from starlock.attestation.snp.testing import build_report, sign_report

    parts = TcbParts(bootloader=3, tee=0, snp=8, microcode=115)
    vcek, key = amd.issue(SigningKey.VCEK, parts)
    tcb = TcbVersion.compose(parts)
    report = sign_report(
        build_report(current_tcb=tcb, reported_tcb=tcb, report_data=report_data, chip_id=bytes(range(64))), key
    )
    pem = serialization.Encoding.PEM
    return json.dumps(
        {
            "ReportSigner": _b64(vcek.public_bytes(pem)),
            "CertChain": _b64(amd.ask.public_bytes(pem)) if with_ask else None,
            "AttestationReport": _b64(report),
            "GCP": INSTANCE,
        }
    ).encode()


def _config(amd: Any, **extra: Any) -> Any:
    pem = serialization.Encoding.PEM
    obj = {
        "measurements": {},
        "bootloaderVersion": 3,
        "teeVersion": 0,
        "snpVersion": 8,
        "microcodeVersion": 115,
        "amdRootKey": amd.ark.public_bytes(pem).decode(),
    } | extra
    return load_attestation_config(obj, Variant.GCP_SEV_SNP, allow_unenforced=True)


def test_accepted_with_gce_api(amd: Any) -> None:
    key = rsa_key()
    info = _info(amd, expected_report_data(make_extra_data(USER_DATA, NONCE)))
    raw = make_document(key, nonce=NONCE, instance_info=info)
    adapters = ValidatorAdapters(gce_identity=_StaticIdentity(key))
    validator = validator_for(_config(amd), at=NOW, adapters=adapters)
    assert isinstance(validator, GcpSevSnpValidator)
    result = validator.validate(raw, NONCE)
    status = {c.name: c.status for c in result.checks}
    assert status["snp.report-data"] is CheckStatus.PASS and status["attestation-key"] is CheckStatus.PASS
    assert validator.evaluate(raw, None).accepted  # without a nonce: REPORT_DATA binding warned


def test_report_data_binding(amd: Any) -> None:
    key = rsa_key()
    stale = _info(amd, expected_report_data(make_extra_data(USER_DATA, b"old nonce")))
    raw = make_document(key, nonce=NONCE, instance_info=stale)
    with pytest.raises(NonceMismatch, match="report data"):
        GcpSevSnpValidator(_config(amd), at=NOW, identity_client=_StaticIdentity(key)).validate(raw, NONCE)


def test_ak_trust_required_and_checked(amd: Any) -> None:
    key = rsa_key()
    info = _info(amd, expected_report_data(make_extra_data(USER_DATA, NONCE)))
    raw = make_document(key, nonce=NONCE, instance_info=info)
    with pytest.raises(UntrustedKey, match="cannot establish trust"):
        GcpSevSnpValidator(_config(amd), at=NOW).validate(raw, NONCE)
    with pytest.raises(UntrustedKey):
        GcpSevSnpValidator(_config(amd), at=NOW, identity_client=_StaticIdentity(rsa_keys(1)[0])).validate(raw, NONCE)
    trust, ak_cert = _google_like(key, INSTANCE)
    with_cert = make_document(key, nonce=NONCE, instance_info=info, ak_cert=ak_cert)
    assert GcpSevSnpValidator(_config(amd), at=NOW, ak_trust=trust).validate(with_cert, NONCE)


def test_ask_from_config_when_not_in_evidence(amd: Any) -> None:
    key = rsa_key()
    info = _info(amd, expected_report_data(make_extra_data(USER_DATA, NONCE)), with_ask=False)
    raw = make_document(key, nonce=NONCE, instance_info=info)
    identity = _StaticIdentity(key)
    with pytest.raises(AttestationError):
        GcpSevSnpValidator(_config(amd), at=NOW, identity_client=identity).validate(raw, NONCE)
    ask = amd.ask.public_bytes(serialization.Encoding.PEM).decode()
    cfg = _config(amd, amdSigningKey=ask)
    assert GcpSevSnpValidator(cfg, at=NOW, identity_client=identity).validate(raw, NONCE)


def test_extra_data_longer_than_report_data() -> None:
    with pytest.raises(MalformedEvidence):
        expected_report_data(bytes(65))


def test_issuer_needs_the_cloud() -> None:
    with pytest.raises(AttestationError, match="extended-report"):
        GcpSevSnpIssuer().issue(b"u", b"n")
