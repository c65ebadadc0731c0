"""AMD SEV-SNP attestation reports: parse, verify the signature and the AMD chain, apply a policy.

High level::

    from starlock.attestation.snp import SnpPolicy, verify_report

    result = verify_report(report_bytes, vcek_pem, ask_ark_pem, SnpPolicy(report_data=expected))
    result.product, result.signing_key, result.checks, result.claims()

Layers (each public, for evidence packaged by other tools): :func:`parse_report` (format only),
:func:`verify_report_signature`, :func:`parse_endorsement_key` / :func:`select_chain` /
:func:`verify_chain` / :func:`check_chain_validity` (the AMD chain), :func:`check_report_binding`
(report vs. VCEK/VLEK), :func:`check_policy`, and :func:`parse_cert_table` for extended reports.
Every failure raises a :class:`~starlock.attestation.errors.AttestationError` whose ``check``
names the failed check and whose message gives the expected and actual values.
"""

from __future__ import annotations

from starlock.attestation.snp.certs import (
    EndorsementKeyInfo,
    VerifiedChain,
    amd_trust_store,
    check_chain_validity,
    intermediate_cn,
    parse_endorsement_key,
    select_chain,
    verify_chain,
)
from starlock.attestation.snp.certtable import (
    ARK_GUID,
    ASK_GUID,
    EXTRA_PLATFORM_INFO_GUID,
    VCEK_GUID,
    VLEK_GUID,
    CertTable,
    CertTableEntry,
    parse_cert_table,
    split_extended_report,
)
from starlock.attestation.snp.kds import (
    DEFAULT_BASE_URL,
    CertificateCache,
    DirectoryCache,
    KdsClient,
    KdsError,
    KdsNotFound,
    KdsOfflineError,
    KdsUnavailable,
    MemoryCache,
    ProductChain,
    RetryPolicy,
    SnpCertificates,
    cert_chain_url,
    check_vcek,
    hwid_for,
    parse_retry_after,
    vcek_url,
)
from starlock.attestation.snp.policy import SnpPolicy, check_policy, check_tcb_minimum
from starlock.attestation.snp.report import (
    REPORT_SIZE,
    SIGNED_SIZE,
    AttestationReport,
    GuestPolicy,
    PlatformInfo,
    Product,
    SignerInfo,
    SigningKey,
    TcbLayout,
    TcbParts,
    TcbVersion,
    parse_report,
    product_from_cpuid,
)
from starlock.attestation.snp.verify import (
    SnpEvaluation,
    SnpVerification,
    SnpVerifier,
    check_report_binding,
    determine_product,
    evaluate_report,
    report_claims,
    verify_report,
    verify_report_signature,
)

__all__ = [
    "ARK_GUID",
    "ASK_GUID",
    "DEFAULT_BASE_URL",
    "EXTRA_PLATFORM_INFO_GUID",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "VCEK_GUID",
    "VLEK_GUID",
    "AttestationReport",
    "CertTable",
    "CertTableEntry",
    "CertificateCache",
    "DirectoryCache",
    "EndorsementKeyInfo",
    "GuestPolicy",
    "KdsClient",
    "KdsError",
    "KdsNotFound",
    "KdsOfflineError",
    "KdsUnavailable",
    "MemoryCache",
    "PlatformInfo",
    "Product",
    "ProductChain",
    "RetryPolicy",
    "SignerInfo",
    "SigningKey",
    "SnpCertificates",
    "SnpEvaluation",
    "SnpPolicy",
    "SnpVerification",
    "SnpVerifier",
    "TcbLayout",
    "TcbParts",
    "TcbVersion",
    "VerifiedChain",
    "amd_trust_store",
    "cert_chain_url",
    "check_chain_validity",
    "check_policy",
    "check_report_binding",
    "check_tcb_minimum",
    "check_vcek",
    "determine_product",
    "evaluate_report",
    "hwid_for",
    "intermediate_cn",
    "parse_cert_table",
    "parse_endorsement_key",
    "parse_report",
    "parse_retry_after",
    "product_from_cpuid",
    "report_claims",
    "select_chain",
    "split_extended_report",
    "vcek_url",
    "verify_chain",
    "verify_report",
    "verify_report_signature",
]
