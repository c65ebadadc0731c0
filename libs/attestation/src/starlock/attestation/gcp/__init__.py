"""GCP variants: gcp-sev-es (:mod:`.es`), gcp-sev-snp (:mod:`.snp`) and AK trust (:mod:`.ak`)."""

from __future__ import annotations

from starlock.attestation.gcp.ak import (
    GCE_INSTANCE_EXTENSION_OID,
    CertifiedAk,
    GceAkCertificateInfo,
    GceComputeApiClient,
    ShieldedInstanceIdentityClient,
    gce_trusted_ak,
    parse_ek_pub_pem,
    parse_gce_instance_extension,
    parse_gce_instance_info,
    verify_gce_ak_certificate,
)
from starlock.attestation.gcp.es import (
    GceConfidentialTechnology,
    GcePlatformState,
    GcpSevEsIssuer,
    GcpSevEsValidator,
    gce_platform_state,
)
from starlock.attestation.gcp.snp import GcpSevSnpIssuer, GcpSevSnpValidator, expected_report_data

__all__ = [
    "GCE_INSTANCE_EXTENSION_OID",
    "CertifiedAk",
    "GceAkCertificateInfo",
    "GceComputeApiClient",
    "GceConfidentialTechnology",
    "GcePlatformState",
    "GcpSevEsIssuer",
    "GcpSevEsValidator",
    "GcpSevSnpIssuer",
    "GcpSevSnpValidator",
    "ShieldedInstanceIdentityClient",
    "expected_report_data",
    "gce_platform_state",
    "gce_trusted_ak",
    "parse_ek_pub_pem",
    "parse_gce_instance_extension",
    "parse_gce_instance_info",
    "verify_gce_ak_certificate",
]
