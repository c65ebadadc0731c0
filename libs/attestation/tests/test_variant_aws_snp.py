"""aws-sev-snp (spec-attestation §5b).

Vectors:
* aws-snp/constellation-aws-vlek-2025-05 — MANIFEST: ACCEPT between 2024-12-10T22:30:16Z and
  2025-12-10T22:30:16Z with report_data == AKDigest 87ab7caf…; REJECT at real time ≥ 2025-12-10
  (VLEK expired); upstream negatives: ReportData zeroed, Signature[0]++.
* aws-snp/constellation-aws-2023-06-extreport — MANIFEST: report_valid ACCEPT at 2023-04-20..2024-04-20
  (VLEK from the GUID table of certs_valid.hex; ask.pem is the ASVK); report_invalid REJECT.
The AK of the 2025 vector is not published (only its digest), so the evidence part is verified
with the digest; full documents use a synthetic VLEK hierarchy.
"""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from test_tpm_quote import RSASSA, ak_for, rsa_key
from test_variant_common import make_document, rsa_keys

from starlock.attestation import CheckStatus, Variant, load_attestation_config
from starlock.attestation._snpinfo import parse_snp_instance_info
from starlock.attestation.aws import AwsSevSnpIssuer, AwsSevSnpValidator, ak_digest, verify_aws_snp_evidence
from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    NonceMismatch,
    PolicyViolation,
    SignatureError,
)
from starlock.attestation.validators import validator_for
from starlock.attestation.vtpm import CheckRecorder

UTC = datetime.UTC
TODAY = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
V2025 = "aws-snp/constellation-aws-vlek-2025-05"
V2023 = "aws-snp/constellation-aws-2023-06-extreport"
INSIDE_2025 = datetime.datetime(2025, 6, 1, tzinfo=UTC)
INSIDE_2023 = datetime.datetime(2023, 10, 1, tzinfo=UTC)
AK_DIGEST_2025 = bytes.fromhex(
    "87ab7caf510e1b3520dc3cceb64ee44128e10976fb0d3fc5e274699d8aaf5061"
    "54af4c1de0a026b49fdf861e9ac75551551b3534d1c61369a3b08f5baed0db2f"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _config(ark_pem: str, asvk_pem: str, **versions: int) -> Any:
    obj = {
        "measurements": {},
        "bootloaderVersion": 0,
        "teeVersion": 0,
        "snpVersion": 0,
        "microcodeVersion": 0,
        "amdRootKey": ark_pem,
        "amdSigningKey": asvk_pem,
    } | versions
    return load_attestation_config(obj, Variant.AWS_SEV_SNP, allow_unenforced=True)


def _split_pem(data: bytes) -> list[str]:
    parts = data.decode().split("-----END CERTIFICATE-----")
    return [p.strip() + "\n-----END CERTIFICATE-----\n" for p in parts if "BEGIN" in p]


@pytest.fixture(scope="module")
def v2025(vectors: Path) -> dict[str, Any]:
    d = vectors / V2025
    asvk, ark = _split_pem((d / "certchain.pem").read_bytes())
    report = base64.b64decode((d / "report.txt").read_bytes())
    vlek = (d / "vlek.pem").read_bytes()
    info = json.dumps({"ReportSigner": _b64(vlek), "AttestationReport": _b64(report)}).encode()
    return {"report": report, "vlek": vlek, "asvk": asvk, "ark": ark, "info": info}


def _verify(info: bytes, digest: bytes, config: Any, at: datetime.datetime) -> CheckRecorder:
    rec = CheckRecorder()
    verify_aws_snp_evidence(parse_snp_instance_info(info), digest, config, rec, at=at)
    return rec


def test_2025_accepted_inside_vlek_window(v2025: dict[str, Any]) -> None:
    cfg = _config(v2025["ark"], v2025["asvk"], bootloaderVersion=4, snpVersion=24, microcodeVersion=219)
    rec = _verify(v2025["info"], AK_DIGEST_2025, cfg, INSIDE_2025)
    status = {c.name: c.status for c in rec.checks}
    assert status["snp.report-data"] is CheckStatus.PASS
    assert status["snp.certificate-validity"] is CheckStatus.PASS


def test_2025_rejected_today(v2025: dict[str, Any]) -> None:
    cfg = _config(v2025["ark"], v2025["asvk"])
    with pytest.raises(CertificateChainError, match="expired"):
        _verify(v2025["info"], AK_DIGEST_2025, cfg, TODAY)


def test_2025_upstream_negatives(v2025: dict[str, Any]) -> None:
    cfg = _config(v2025["ark"], v2025["asvk"])
    with pytest.raises(NonceMismatch, match="report data"):
        _verify(v2025["info"], bytes(64), cfg, INSIDE_2025)  # another AK digest
    report = bytearray(v2025["report"])
    report[0x2A0] = (report[0x2A0] + 1) % 256
    info = json.dumps({"ReportSigner": _b64(v2025["vlek"]), "AttestationReport": _b64(bytes(report))}).encode()
    with pytest.raises(SignatureError):
        _verify(info, AK_DIGEST_2025, cfg, INSIDE_2025)
    with pytest.raises(PolicyViolation, match="launch TCB"):
        _verify(v2025["info"], AK_DIGEST_2025, _config(v2025["ark"], v2025["asvk"], microcodeVersion=220), INSIDE_2025)


def test_2025_vlek_needs_the_asvk(v2025: dict[str, Any], vectors: Path) -> None:
    ask, ark = _split_pem((vectors / "other/amd-kds-roots/ask_ark_milan.pem").read_bytes())
    with pytest.raises(CertificateChainError):
        _verify(v2025["info"], AK_DIGEST_2025, _config(ark, ask), INSIDE_2025)  # VCEK ASK for a VLEK
    g_asvk, g_ark = _split_pem((vectors / "other/amd-kds-roots/ask_ark_genoa_vlek.pem").read_bytes())
    with pytest.raises(AttestationError):
        _verify(v2025["info"], AK_DIGEST_2025, _config(g_ark, g_asvk), INSIDE_2025)  # other product line


def test_2023_extreport_cert_table(vectors: Path) -> None:
    d = vectors / V2023
    asvk = (d / "ask.pem").read_text()
    ark = _split_pem((vectors / "other/amd-kds-roots/ask_ark_milan_vlek.pem").read_bytes())[1]
    certs = bytes.fromhex((d / "certs_valid.hex").read_text().strip())
    cfg = _config(ark, asvk, bootloaderVersion=3, snpVersion=10, microcodeVersion=115)
    for name, ok in (("report_valid.hex", True), ("report_invalid.hex", False)):
        report = bytes.fromhex((d / name).read_text().strip())
        info = json.dumps({"Report": _b64(report), "Certs": _b64(certs)}).encode()  # the 2023 InstanceInfo form
        if ok:
            _verify(info, bytes(64), cfg, INSIDE_2023)
            with pytest.raises(CertificateChainError, match="expired"):
                _verify(info, bytes(64), cfg, TODAY)
        else:
            with pytest.raises(SignatureError):
                _verify(info, bytes(64), cfg, INSIDE_2023)


# --- full documents (synthetic VLEK hierarchy) -------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> dict[str, Any]:
    from starlock.attestation.snp import SigningKey, TcbParts, TcbVersion
    from starlock.attestation.snp.testing import SyntheticAmd, build_report, sign_report

    amd = SyntheticAmd.generate()
    parts = TcbParts(bootloader=4, tee=0, snp=24, microcode=217)
    not_after = datetime.datetime(2025, 12, 10, tzinfo=UTC)
    vlek, vlek_key = amd.issue(
        SigningKey.VLEK, parts, not_before=datetime.datetime(2024, 12, 10, tzinfo=UTC), not_after=not_after
    )
    key = rsa_key()
    tcb = TcbVersion.compose(parts)
    raw = build_report(
        signing_key=SigningKey.VLEK, current_tcb=tcb, reported_tcb=tcb, report_data=ak_digest(ak_for(key, RSASSA))
    )
    report = sign_report(raw, vlek_key)
    pem = serialization.Encoding.PEM
    info = json.dumps({"ReportSigner": _b64(vlek.public_bytes(pem)), "AttestationReport": _b64(report)}).encode()
    cfg = _config(amd.ark.public_bytes(pem).decode(), amd.asvk.public_bytes(pem).decode(), bootloaderVersion=4)
    return {"key": key, "info": info, "config": cfg}


def test_full_document(synthetic: dict[str, Any]) -> None:
    raw = make_document(synthetic["key"], nonce=b"n", instance_info=synthetic["info"])
    validator = validator_for(synthetic["config"], at=INSIDE_2025)
    assert isinstance(validator, AwsSevSnpValidator)
    result = validator.validate(raw, b"n")
    assert result.user_data == b"\x42" * 32
    # The synthetic ARK is not a pinned AMD root: trusted because the config names it, but warned.
    assert any(w.startswith("amd-root:") and "not a pinned AMD root" in w for w in result.warnings)
    with pytest.raises(NonceMismatch):
        validator.validate(raw, b"other")
    report = AwsSevSnpValidator(synthetic["config"], at=TODAY).evaluate(raw, b"n")
    assert isinstance(report.error, CertificateChainError)
    # another AK than the one the report binds
    other = make_document(rsa_keys(1)[0], nonce=b"n", instance_info=synthetic["info"])
    with pytest.raises(NonceMismatch, match="report data"):
        validator.validate(other, b"n")


def test_issuer_needs_the_cloud() -> None:
    with pytest.raises(AttestationError, match="sev-guest"):
        AwsSevSnpIssuer().issue(b"u", b"n")
