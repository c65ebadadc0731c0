"""azure-sev-snp (reference: spec-attestation §5a).

The AK is trusted when, in this order:

1. the SNP report (``InstanceInfo.AttestationReport``, HCL bytes 0x20..0x4C0) verifies under the
   VCEK (``ReportSigner``, THIM) → ASK (issuer's ``CertChain`` or config ``amdSigningKey``) → ARK
   (config ``amdRootKey``, or a pinned ARK the issuer sends) at the verification time, with
   Constellation's policy, except that Genoa is accepted besides Milan (below): no
   DEBUG/MIGRATE_MA/CXL, VMPL 0, reported and launch TCB ≥ the configured versions, provisional
   firmware permitted;
2. its ID key digest is in ``acceptedKeyDigests``, or else, by ``enforcementPolicy``: ``equal`` →
   rejected; ``warnOnly`` → warning; ``maaFallback`` → the MAA token must validate
   (:mod:`.maa`);
3. SHA-256(runtime data) == REPORT_DATA[0:32], and the runtime data's HCL AK is the document's AK.

Differs from Constellation, whose ``snp.Product()`` is hard-coded Milan: Azure also runs Genoa
confidential VMs, so Genoa reports are accepted with the Genoa chain (product from the report's
CPUID for v3+ reports, else the VCEK's productName; SEV-Genoa and ARK-Genoa from the issuer's
THIM chain or the config). A Genoa VCEK never verifies under the Milan ASK, nor the reverse.
"""

from __future__ import annotations

import datetime

from starlock.attestation._certpath import utc_now
from starlock.attestation._cloudissuer import CloudVtpmIssuer, InstanceInfoSource
from starlock.attestation.azure.hcl import check_hcl_ak, check_runtime_data_binding, parse_runtime_data
from starlock.attestation.azure.maa import HttpJwksFetcher, JwksFetcher, validate_maa_token
from starlock.attestation.config import AttestationConfig, EnforcementPolicy
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import ConfigError, MalformedEvidence
from starlock.attestation.snp import Product, SnpPolicy, SnpVerification
from starlock.attestation.snpinfo import SnpInstanceInfo, parse_snp_instance_info, run_snp_verification, snp_chain
from starlock.attestation.tpm import TpmPublic, parse_tpmt_public
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder, VtpmValidator

__all__ = [
    "AZURE_PRODUCTS",
    "AzureSevSnpIssuer",
    "AzureSevSnpValidator",
    "azure_snp_policy",
    "verify_azure_snp_evidence",
]

AK_PERSISTENT_HANDLE = 0x81000003
#: Product lines accepted for azure-sev-snp (upstream: Milan only).
AZURE_PRODUCTS = (Product.MILAN, Product.GENOA)


def azure_snp_policy(config: AttestationConfig) -> SnpPolicy:
    """Constellation's azure-sev-snp policy; ID-key mismatches are decided after (step 2)."""
    signer = config.firmware_signer
    if signer is None:
        raise ConfigError("azure-sev-snp config: firmwareSignerConfig is required")
    return SnpPolicy.from_config(
        config,
        minimum_reported_tcb=config.snp_versions,
        id_key_digest_warn_only=signer.enforcement_policy is not EnforcementPolicy.EQUAL,
        allowed_products=AZURE_PRODUCTS,
    )


def verify_azure_snp_evidence(
    info: SnpInstanceInfo,
    ak: TpmPublic,
    config: AttestationConfig,
    rec: CheckRecorder,
    *,
    at: datetime.datetime,
    extra_data: bytes | None,
    jwks_fetcher: JwksFetcher,
) -> SnpVerification:
    """Steps 1–3 of the module docstring for parsed InstanceInfo and the document's AK."""
    policy = rec.run("snp-policy", lambda: azure_snp_policy(config), lambda _: "Milan or Genoa, Constellation defaults")
    chain = rec.run("snp-chain", lambda: snp_chain(info, config, rec), lambda c: f"{len(c)} AMD certificates")
    verified = run_snp_verification(
        info.attestation_report, info.report_signer, chain=chain, policy=policy, config=config, rec=rec, at=at
    )
    signer = config.firmware_signer
    if (
        signer is not None
        and not verified.id_key_accepted
        and signer.enforcement_policy is EnforcementPolicy.MAA_FALLBACK
    ):
        azure = info.azure
        rec.run(
            "maa-token",
            lambda: validate_maa_token(
                azure.maa_token if azure is not None else "",
                maa_url=signer.maa_url,
                fetcher=jwks_fetcher,
                at=at,
                extra_data=extra_data,
                report=verified.report,
            ),
            lambda t: f"MAA token from {t.claims.get('iss')} vouches for the ID key digest",
        )
    if info.azure is None:
        rec.fail("runtime-data", MalformedEvidence("InstanceInfo.Azure (runtime data) is missing"))
    runtime_raw = info.azure.runtime_data
    runtime = rec.run("runtime-data", lambda: parse_runtime_data(runtime_raw), lambda r: f"{len(r.keys)} keys")
    rec.run(
        "runtime-data-binding",
        lambda: check_runtime_data_binding(runtime_raw, verified.report.report_data),
        lambda _: "SHA-256(runtime data) == REPORT_DATA[0:32]",
    )
    rec.run("hcl-ak", lambda: check_hcl_ak(runtime.ak_key(), ak), lambda _: "the HCL AK is the document's AK")
    return verified


class AzureSevSnpValidator(VtpmValidator):
    """Validator for :attr:`Variant.AZURE_SEV_SNP`."""

    variant = Variant.AZURE_SEV_SNP

    def __init__(
        self,
        config: AttestationConfig,
        *,
        at: datetime.datetime | None = None,
        jwks_fetcher: JwksFetcher | None = None,
    ) -> None:
        super().__init__(config)
        self.at = at
        self.jwks_fetcher: JwksFetcher = jwks_fetcher if jwks_fetcher is not None else HttpJwksFetcher()

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        ak = rec.run(
            "ak-parse", lambda: parse_tpmt_public(document.attestation.ak_pub), lambda k: f"AK {k.name().hex()}"
        )
        info = rec.run(
            "instance-info", lambda: parse_snp_instance_info(document.instance_info), lambda _: "snp.InstanceInfo"
        )
        verify_azure_snp_evidence(
            info,
            ak,
            self.config,
            rec,
            at=self.at or utc_now(),
            extra_data=extra_data or None,
            jwks_fetcher=self.jwks_fetcher,
        )
        return ak


class AzureSevSnpIssuer(CloudVtpmIssuer):
    """Issuer for :attr:`Variant.AZURE_SEV_SNP`: AK at 0x81000003; InstanceInfo from the adapter
    (HCL report from TPM NV 0x01400001, VCEK and chain from THIM, optional MAA token)."""

    variant_value = Variant.AZURE_SEV_SNP
    metadata_name = "the HCL report / THIM adapter"

    def __init__(self, instance_info: InstanceInfoSource | None = None, *, tcti: str = "device:/dev/tpmrm0") -> None:
        super().__init__(instance_info, tcti=tcti, ak_persistent_handle=AK_PERSISTENT_HANDLE)
