"""Constellation's ``snp.InstanceInfo`` (spec §4.2), public: what the SNP-backed vTPM variants
(azure-sev-snp, aws-sev-snp, gcp-sev-snp) carry in a document's ``InstanceInfo``, and running the
SNP report layer (:mod:`starlock.attestation.snp`) inside a variant's check recorder.

:class:`SnpInstanceInfo` and :class:`AzureInfo` are public API (also exported by
:mod:`starlock.attestation`); ``starlock.attestation._snpinfo`` remains as a deprecated alias.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography import x509

from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import GceInstanceInfo
from starlock.attestation.errors import AttestationError, ConfigError, MalformedEvidence
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.snp import (
    REPORT_SIZE,
    SnpPolicy,
    SnpVerification,
    SnpVerifier,
    amd_trust_store,
    parse_cert_table,
)
from starlock.attestation.trust import TrustStore, fingerprint, load_certificates, subject_cn
from starlock.attestation.vtpm import CheckRecorder

__all__ = ["AzureInfo", "SnpInstanceInfo", "parse_snp_instance_info", "run_snp_verification", "snp_chain"]

MAX_INSTANCE_INFO = 256 * 1024


@attrs.frozen
class AzureInfo:
    """``InstanceInfo.Azure``: the HCL runtime data (JSON bytes, bound by REPORT_DATA[0:32]) and an
    optional MAA token (a JWT, empty when the issuer made none)."""

    runtime_data: bytes = attrs.field(repr=False)
    maa_token: str = attrs.field(repr=False)


@attrs.frozen
class SnpInstanceInfo:
    """Constellation's ``snp.InstanceInfo``.

    ``attestation_report`` is the raw SEV-SNP report (0x4A0 bytes); ``report_signer`` (VCEK/VLEK)
    and ``cert_chain`` (ASK/ASVK, optionally the ARK) are PEM or DER bytes, empty when absent;
    ``azure`` / ``gcp`` hold the cloud-specific parts. Parse one with :func:`parse_snp_instance_info`.
    """

    attestation_report: bytes
    report_signer: bytes = b""
    cert_chain: bytes = b""
    azure: AzureInfo | None = None
    gcp: GceInstanceInfo | None = None


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """Go encoding/json matches keys case-insensitively (exact match preferred)."""
    if key in obj:
        return obj[key]
    lower = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == lower:
            return v
    return None


def _b64(value: Any, name: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise MalformedEvidence(f"InstanceInfo.{name}: expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"InstanceInfo.{name}: not valid base64") from None


def parse_snp_instance_info(data: bytes) -> SnpInstanceInfo:
    """Parse the InstanceInfo JSON of azure-sev-snp / aws-sev-snp / gcp-sev-snp documents.

    Also reads the first aws-sev-snp form (2023-06): ``{"Report": b64, "Certs": b64(cert table)}``,
    taking the VLEK (or VCEK) from the certificate table.
    """
    if len(data) > MAX_INSTANCE_INFO:
        raise MalformedEvidence(f"InstanceInfo: {len(data)} bytes, at most {MAX_INSTANCE_INFO}")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"InstanceInfo: not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEvidence("InstanceInfo: expected a JSON object")
    if "AttestationReport" not in obj and "Report" in obj:
        table = parse_cert_table(_b64(obj.get("Certs"), "Certs"))
        return SnpInstanceInfo(
            attestation_report=_b64(obj["Report"], "Report"), report_signer=table.vlek or table.vcek or b""
        )
    report = _b64(_get(obj, "AttestationReport"), "AttestationReport")
    if len(report) < REPORT_SIZE:
        raise MalformedEvidence(f"InstanceInfo.AttestationReport: {len(report)} bytes, expected at least {REPORT_SIZE}")
    azure = _get(obj, "Azure")
    azure_info = None
    if azure is not None:
        if not isinstance(azure, dict):
            raise MalformedEvidence("InstanceInfo.Azure: expected an object")
        token = _get(azure, "MAAToken") or ""
        if not isinstance(token, str) or len(token) > MAX_INSTANCE_INFO:
            raise MalformedEvidence("InstanceInfo.Azure.MAAToken: expected a string")
        azure_info = AzureInfo(_b64(_get(azure, "RuntimeData"), "Azure.RuntimeData"), token)
    gcp = _get(obj, "GCP")
    gcp_info = None
    if gcp is not None:
        from starlock.attestation.gcp.ak import parse_gce_instance_info

        gcp_info = parse_gce_instance_info(gcp)
    return SnpInstanceInfo(
        attestation_report=report[:REPORT_SIZE],
        report_signer=_b64(_get(obj, "ReportSigner"), "ReportSigner").strip(),
        cert_chain=_b64(_get(obj, "CertChain"), "CertChain").strip(),
        azure=azure_info,
        gcp=gcp_info,
    )


def snp_chain(info: SnpInstanceInfo, config: AttestationConfig, rec: CheckRecorder) -> list[x509.Certificate]:
    """ASK/ASVK and ARK by Constellation's precedence (spec §3): the issuer's intermediate if it
    sends one, else the config's ``amdSigningKey``; the ARK always from the config's ``amdRootKey``
    (an issuer-supplied ARK is ignored)."""
    intermediates: list[x509.Certificate] = []
    if info.cert_chain:
        try:
            sent = load_certificates(info.cert_chain, max_certs=4)
        except AttestationError as exc:
            rec.add("cert-chain", CheckStatus.WARN, f"issuer's CertChain ignored: {exc}")
            sent = []
        intermediates = [c for c in sent if (subject_cn(c) or "").startswith("SEV-")]
        # Differs from Constellation (which only knows Milan and ignores an issuer's ARK): an ARK
        # the issuer sends is used when it is one of the pinned AMD roots, so a Genoa VM's THIM
        # chain (SEV-Genoa + ARK-Genoa) verifies with a config whose amdRootKey is ARK-Milan.
        pins = amd_trust_store()
        pinned_arks = [c for c in sent if (subject_cn(c) or "").startswith("ARK-") and pins.is_pinned(c)]
    else:
        pinned_arks = []
    if not intermediates and config.amd_signing_key_pem:
        intermediates = load_certificates(config.amd_signing_key_pem.encode())
    if not config.amd_root_key_pem:
        raise ConfigError("attestation config: amdRootKey (the ARK) is required")
    configured = load_certificates(config.amd_root_key_pem.encode())
    names = {subject_cn(c) for c in configured}
    return [*intermediates, *configured, *(c for c in pinned_arks if subject_cn(c) not in names)]


def _trust_store(config: AttestationConfig, rec: CheckRecorder) -> TrustStore:
    """The AMD pins plus the config's ARK, which the operator chose as the root (as upstream).

    An ARK that is not one of the pinned AMD roots is still trusted, because the attestation
    config names it, but never silently: the report carries a warning with its fingerprint.
    """
    store = amd_trust_store()  # pinned AMD roots: an issuer's pinned ARK (see snp_chain) needs no opt-in
    for cert in load_certificates(config.amd_root_key_pem.encode()):
        if store.is_pinned(cert):
            store.add(cert)
            continue
        store.add(cert, explicitly_trusted=True)
        rec.add(
            "amd-root",
            CheckStatus.WARN,
            f"amdRootKey {subject_cn(cert) or '?'} (sha256 {fingerprint(cert)}) is not a pinned AMD root; "
            "trusted only because the attestation config names it",
        )
    return store


def run_snp_verification(
    report: bytes,
    signer: bytes,
    *,
    chain: list[x509.Certificate],
    policy: SnpPolicy,
    config: AttestationConfig,
    rec: CheckRecorder,
    at: datetime.datetime,
) -> SnpVerification:
    """Verify the report with the SNP layer; its checks are recorded as ``snp.<name>``."""
    if not signer:
        rec.fail("snp.signer-profile", MalformedEvidence("InstanceInfo has no ReportSigner (VCEK/VLEK certificate)"))
    evaluation = SnpVerifier(policy, trust_store=_trust_store(config, rec)).evaluate(report, signer, chain, at=at)
    for check in evaluation.checks:
        rec.add(f"snp.{check.name}", check.status, check.detail)
    if evaluation.error is not None:
        raise evaluation.error
    return evaluation.unwrap()
