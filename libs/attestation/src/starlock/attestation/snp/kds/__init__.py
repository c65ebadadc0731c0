"""AMD KDS adapter: fetch ASK/ARK chains and VCEKs, check them, and cache them (spec-attestation §3).

This is the fetching side of architecture principle 2; verification stays pure elsewhere. What is
fetched is checked before it is cached or returned: a ``cert_chain`` must hold the product's
pinned ASK (or ASVK) then its pinned ARK; a VCEK must pass ``snp.verify_chain`` (AMD profile,
VCEK <- ASK <- pinned ARK) and carry the requested hwID and TCB.
Caches sit behind :class:`CertificateCache` (a directory here, a ConfigMap in the join service).
:class:`KdsClient` sends at most one request per cache key at a time, paces requests
(``RetryPolicy.min_interval``), honours ``429``/``Retry-After`` and retries ``5xx`` within a
bounded total wait. Differs from go-sev-guest on purpose: VCEK and VLEK chains are cached under
separate keys (its per-line cache can hand back the wrong intermediate), and ``Retry-After`` is
honoured.
"""

from __future__ import annotations

from starlock.attestation.snp.kds._cache import CertificateCache, DirectoryCache, MemoryCache
from starlock.attestation.snp.kds._checks import ProductChain, SnpCertificates, check_vcek
from starlock.attestation.snp.kds._client import KdsClient
from starlock.attestation.snp.kds._common import (
    DEFAULT_BASE_URL,
    MAX_RESPONSE_SIZE,
    KdsError,
    KdsNotFound,
    KdsOfflineError,
    KdsUnavailable,
    cert_chain_url,
    hwid_for,
    vcek_url,
)
from starlock.attestation.snp.kds._http import RetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_SIZE",
    "CertificateCache",
    "DirectoryCache",
    "KdsClient",
    "KdsError",
    "KdsNotFound",
    "KdsOfflineError",
    "KdsUnavailable",
    "MemoryCache",
    "ProductChain",
    "RetryPolicy",
    "SnpCertificates",
    "cert_chain_url",
    "check_vcek",
    "hwid_for",
    "parse_retry_after",
    "vcek_url",
]
