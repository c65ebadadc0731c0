"""gcp-sev-snp (reference: spec-attestation §5d).

1. The SNP report (``InstanceInfo.AttestationReport``) verifies under the VCEK (``ReportSigner``)
   → ASK (issuer's ``CertChain`` from the extended report, else config ``amdSigningKey``) → ARK
   (config ``amdRootKey``) at the verification time; REPORT_DATA == extraData ‖ 32 zero bytes (the
   per-connection binding); policy as upstream (Milan, no DEBUG/MIGRATE_MA/CXL, VMPL 0, launch
   TCB ≥ config, provisional firmware permitted, no ID-key checks).
2. The AK is trusted as for gcp-sev-es (:mod:`.ak`), with ``InstanceInfo.GCP`` as the instance.
   As upstream, nothing links the SNP report to the AK cryptographically.
3. No ``validate_cvm`` checks.
"""

from __future__ import annotations

import datetime

from starlock.attestation._certpath import utc_now
from starlock.attestation._cloudissuer import CloudVtpmIssuer
from starlock.attestation._snpinfo import parse_snp_instance_info, run_snp_verification, snp_chain
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.gcp.ak import ShieldedInstanceIdentityClient, gce_trusted_ak
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.snp import Product, SnpPolicy
from starlock.attestation.tpm import TpmPublic
from starlock.attestation.trust import TrustStore
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder, VtpmValidator

__all__ = ["GcpSevSnpIssuer", "GcpSevSnpValidator", "expected_report_data"]


def expected_report_data(extra_data: bytes) -> bytes:
    """extraData zero-padded to 64 bytes (error if longer)."""
    if len(extra_data) > 64:
        raise MalformedEvidence(f"extraData is {len(extra_data)} bytes, at most 64 fit REPORT_DATA")
    return extra_data.ljust(64, b"\x00")


class GcpSevSnpValidator(VtpmValidator):
    """Validator for :attr:`Variant.GCP_SEV_SNP`."""

    variant = Variant.GCP_SEV_SNP

    def __init__(
        self,
        config: AttestationConfig,
        *,
        at: datetime.datetime | None = None,
        identity_client: ShieldedInstanceIdentityClient | None = None,
        ak_trust: TrustStore | None = None,
    ) -> None:
        super().__init__(config)
        self.at = at
        self.identity_client = identity_client
        self.ak_trust = ak_trust

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        at = self.at or utc_now()
        info = rec.run(
            "instance-info", lambda: parse_snp_instance_info(document.instance_info), lambda _: "snp.InstanceInfo"
        )
        if extra_data:
            report_data: bytes | None = expected_report_data(extra_data)
        else:
            report_data = None
            rec.add("snp.report-data", CheckStatus.WARN, "no nonce: REPORT_DATA binding not checked")
        policy = SnpPolicy.from_config(self.config, report_data=report_data, allowed_products=(Product.MILAN,))
        chain = rec.run("snp-chain", lambda: snp_chain(info, self.config, rec), lambda c: f"{len(c)} AMD certificates")
        run_snp_verification(
            info.attestation_report, info.report_signer, chain=chain, policy=policy, config=self.config, rec=rec, at=at
        )
        return gce_trusted_ak(
            document,
            self.config,
            rec,
            instance=info.gcp,
            trust=self.ak_trust,
            identity=self.identity_client,
            at=at,
        )


class GcpSevSnpIssuer(CloudVtpmIssuer):
    """Issuer for :attr:`Variant.GCP_SEV_SNP`: InstanceInfo (SNP extended report with REPORT_DATA =
    extraData ‖ 0^32, VCEK/ASK from its certificate table, GCP instance) from the adapter."""

    variant_value = Variant.GCP_SEV_SNP
    metadata_name = "the SEV-SNP extended-report and GCE metadata adapter"
