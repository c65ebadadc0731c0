"""Trust anchors: pinned fingerprints, loading certificates, a trust store, certificate sources.

Principle 6 of the architecture: AMD, Google and Microsoft anchors are pinned by SHA-256
fingerprint here; their bytes come from the evidence, a user bundle (:class:`BundleFile`) or a
fetch adapter with an on-disk cache (:class:`CachedFetcher`). :class:`TrustStore` accepts only
pinned certificates unless the caller trusts one explicitly.
"""

from __future__ import annotations

from starlock.attestation.trust._certs import (
    MAX_BUNDLE_CERTS,
    MAX_BUNDLE_SIZE,
    check_validity,
    describe,
    fingerprint,
    issuer_of,
    load_certificates,
    subject_cn,
    subject_of,
    verify_certificate_signature,
    verify_signed_by,
)
from starlock.attestation.trust._pins import (
    AMEROOT_SHA256,
    ARK_GENOA_SHA256,
    ARK_MILAN_SHA256,
    ARK_TURIN_SHA256,
    ASK_GENOA_SHA256,
    ASK_MILAN_SHA256,
    ASK_TURIN_SHA256,
    ASVK_GENOA_SHA256,
    ASVK_MILAN_SHA256,
    ASVK_TURIN_SHA256,
    GCP_EK_AK_CA_INTERMEDIATE_V3_SHA256,
    GCP_EK_AK_CA_ROOT_SHA256,
    PINNED_ANCHORS,
    TPM_EK_INTERMEDIATE_2_SHA256,
    TPM_EK_INTERMEDIATE_3_SHA256,
    TPM_EK_ROOT_1_SHA256,
    Family,
    PinnedAnchor,
    Role,
    pinned_anchor,
)
from starlock.attestation.trust._sources import (
    BundleFile,
    CachedFetcher,
    CertificateSource,
    EvidenceCertificates,
    FetchedCertificates,
)
from starlock.attestation.trust._store import TrustedCertificate, TrustStore, check_anchor_validity, is_expired

__all__ = [
    "AMEROOT_SHA256",
    "ARK_GENOA_SHA256",
    "ARK_MILAN_SHA256",
    "ARK_TURIN_SHA256",
    "ASK_GENOA_SHA256",
    "ASK_MILAN_SHA256",
    "ASK_TURIN_SHA256",
    "ASVK_GENOA_SHA256",
    "ASVK_MILAN_SHA256",
    "ASVK_TURIN_SHA256",
    "GCP_EK_AK_CA_INTERMEDIATE_V3_SHA256",
    "GCP_EK_AK_CA_ROOT_SHA256",
    "MAX_BUNDLE_CERTS",
    "MAX_BUNDLE_SIZE",
    "PINNED_ANCHORS",
    "TPM_EK_INTERMEDIATE_2_SHA256",
    "TPM_EK_INTERMEDIATE_3_SHA256",
    "TPM_EK_ROOT_1_SHA256",
    "BundleFile",
    "CachedFetcher",
    "CertificateSource",
    "EvidenceCertificates",
    "Family",
    "FetchedCertificates",
    "PinnedAnchor",
    "Role",
    "TrustStore",
    "TrustedCertificate",
    "check_anchor_validity",
    "check_validity",
    "describe",
    "fingerprint",
    "is_expired",
    "issuer_of",
    "load_certificates",
    "pinned_anchor",
    "subject_cn",
    "subject_of",
    "verify_certificate_signature",
    "verify_signed_by",
]
