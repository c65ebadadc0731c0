"""Azure variants: azure-sev-snp (:mod:`.snp`, with :mod:`.hcl` and :mod:`.maa`) and
azure-trustedlaunch (:mod:`.trustedlaunch`)."""

from __future__ import annotations

from starlock.attestation.azure.hcl import (
    HCL_REPORT_NV_INDEX,
    HclReport,
    RuntimeData,
    RuntimeKey,
    check_hcl_ak,
    check_runtime_data_binding,
    parse_hcl_report,
    parse_runtime_data,
)
from starlock.attestation.azure.maa import (
    HttpJwksFetcher,
    JwksFetcher,
    MaaToken,
    MaaTokenError,
    parse_jwks,
    validate_maa_token,
    verify_jwt_rs256,
)
from starlock.attestation.azure.snp import (
    AzureSevSnpIssuer,
    AzureSevSnpValidator,
    azure_snp_policy,
    verify_azure_snp_evidence,
)
from starlock.attestation.azure.trustedlaunch import (
    AK_CERT_NV_INDEX,
    AzureTrustedLaunchIssuer,
    AzureTrustedLaunchValidator,
    TrustedLaunchInstanceInfo,
    parse_trustedlaunch_instance_info,
    verify_azure_ak_certificate,
)

__all__ = [
    "AK_CERT_NV_INDEX",
    "HCL_REPORT_NV_INDEX",
    "AzureSevSnpIssuer",
    "AzureSevSnpValidator",
    "AzureTrustedLaunchIssuer",
    "AzureTrustedLaunchValidator",
    "HclReport",
    "HttpJwksFetcher",
    "JwksFetcher",
    "MaaToken",
    "MaaTokenError",
    "RuntimeData",
    "RuntimeKey",
    "TrustedLaunchInstanceInfo",
    "azure_snp_policy",
    "check_hcl_ak",
    "check_runtime_data_binding",
    "parse_hcl_report",
    "parse_jwks",
    "parse_runtime_data",
    "parse_trustedlaunch_instance_info",
    "validate_maa_token",
    "verify_azure_ak_certificate",
    "verify_azure_snp_evidence",
    "verify_jwt_rs256",
]
