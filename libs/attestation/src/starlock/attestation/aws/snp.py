"""aws-sev-snp (reference: spec-attestation §5b).

The AK is trusted when the SNP report (``InstanceInfo.AttestationReport``) verifies under the VLEK
(``ReportSigner``; or, in the 2023 form, the VLEK entry of the certificate table) → ASVK (issuer's
``CertChain`` or config ``amdSigningKey``) → ARK (config ``amdRootKey``) at the verification time,
and REPORT_DATA (all 64 bytes) == SHA-512(DER SubjectPublicKeyInfo of the AK). Policy as upstream:
Milan only, no DEBUG/MIGRATE_MA/CXL, VMPL 0, launch TCB ≥ the configured versions, provisional
firmware permitted, no ID-key checks. VLEKs are valid for one year: give ``at`` inside the VLEK's
validity to verify old evidence.
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography.hazmat.primitives import serialization

from starlock.attestation._certpath import utc_now
from starlock.attestation._cloudissuer import CloudVtpmIssuer
from starlock.attestation._snpinfo import SnpInstanceInfo, parse_snp_instance_info, run_snp_verification, snp_chain
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import AttestationDocument
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.snp import Product, SnpPolicy, SnpVerification
from starlock.attestation.tpm import TpmPublic, parse_tpmt_public
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder, VtpmValidator

__all__ = ["AwsSevSnpIssuer", "AwsSevSnpValidator", "ak_digest", "verify_aws_snp_evidence"]


def ak_digest(ak: TpmPublic) -> bytes:
    """SHA-512 of the DER SubjectPublicKeyInfo of the AK (what the issuer puts in REPORT_DATA)."""
    der = ak.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha512(der).digest()


def verify_aws_snp_evidence(
    info: SnpInstanceInfo,
    expected_report_data: bytes,
    config: AttestationConfig,
    rec: CheckRecorder,
    *,
    at: datetime.datetime,
) -> SnpVerification:
    """Verify the report for ``expected_report_data`` (the AK digest) under the config's policy."""
    policy = SnpPolicy.from_config(config, report_data=expected_report_data, allowed_products=(Product.MILAN,))
    chain = rec.run("snp-chain", lambda: snp_chain(info, config, rec), lambda c: f"{len(c)} AMD certificates")
    return run_snp_verification(
        info.attestation_report, info.report_signer, chain=chain, policy=policy, config=config, rec=rec, at=at
    )


class AwsSevSnpValidator(VtpmValidator):
    """Validator for :attr:`Variant.AWS_SEV_SNP`."""

    variant = Variant.AWS_SEV_SNP

    def __init__(self, config: AttestationConfig, *, at: datetime.datetime | None = None) -> None:
        super().__init__(config)
        self.at = at

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        ak = rec.run(
            "ak-parse", lambda: parse_tpmt_public(document.attestation.ak_pub), lambda k: f"AK {k.name().hex()}"
        )
        digest = ak_digest(ak)
        rec.add("ak-digest", CheckStatus.PASS, f"SHA-512(DER SPKI of the AK) = {digest.hex()}")
        info = rec.run(
            "instance-info", lambda: parse_snp_instance_info(document.instance_info), lambda _: "snp.InstanceInfo"
        )
        verify_aws_snp_evidence(info, digest, self.config, rec, at=self.at or utc_now())
        return ak


class AwsSevSnpIssuer(CloudVtpmIssuer):
    """Issuer for :attr:`Variant.AWS_SEV_SNP`: InstanceInfo {ReportSigner: VLEK, AttestationReport}
    from the adapter (SNP extended report with REPORT_DATA = SHA-512(AK SPKI) via /dev/sev-guest)."""

    variant_value = Variant.AWS_SEV_SNP
    metadata_name = "the SEV-SNP extended-report adapter (/dev/sev-guest)"
