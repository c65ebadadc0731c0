"""The AMD ASK/ARK cache in ConfigMap ``kube-system/sev-snp-cert-cache`` (spec §2.11).

For ``azure-sev-snp`` (VCEK reports) and ``aws-sev-snp`` (VLEK: the ASVK) only. Both keys
present: used as they are. Otherwise the chain for Milan is fetched through the KDS client (which
checks it against the pinned AMD roots before returning it), only the missing keys are filled,
and the ConfigMap is created (another replica creating it first wins; it is then re-read) or
updated. Upstream's ClusterRole cannot update ConfigMaps, so that path always failed there; the
role shipped in ``deploy/kubernetes/base/join-service-rbac.yaml`` grants ``patch`` on this one ConfigMap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization

from starlock.attestation import Variant
from starlock.joinservice.errors import JoinServiceError

__all__ = ["ask_from_cache"]

SNP_CACHE_VARIANTS = (Variant.AZURE_SEV_SNP, Variant.AWS_SEV_SNP)


class CacheStore(Protocol):
    def read_cert_cache(self) -> dict[str, str] | None: ...
    def write_cert_cache(self, data: dict[str, str], *, exists: bool) -> bool: ...


def _pem(cert: Any) -> str:
    return str(cert.public_bytes(serialization.Encoding.PEM).decode())


def ask_from_cache(
    store: CacheStore, fetch_chain: Callable[[Variant], Any], variant: Variant, on_fetch: Callable[[bool], None]
) -> str:
    """The cached (or fetched and cached) ASK/ASVK PEM for ``variant``."""
    if variant not in SNP_CACHE_VARIANTS:
        return ""
    current = store.read_cert_cache()
    have = dict(current or {})
    if have.get("ask") and have.get("ark"):
        return have["ask"]
    try:
        chain = fetch_chain(variant)
    except Exception as exc:
        on_fetch(False)
        raise JoinServiceError(
            f"AMD KDS: cannot fetch the Milan certificate chain ({type(exc).__name__}: {exc})"
        ) from None
    on_fetch(True)
    missing = {k: v for k, v in (("ask", _pem(chain.intermediate)), ("ark", _pem(chain.ark))) if not have.get(k)}
    if store.write_cert_cache(missing if current is not None else {**have, **missing}, exists=current is not None):
        return have.get("ask") or missing["ask"]
    again = store.read_cert_cache() or {}  # another replica created it first
    if not again.get("ask"):
        raise JoinServiceError("sev-snp-cert-cache was created without an 'ask' by another writer")
    return again["ask"]


def kds_fetcher() -> Callable[[Variant], Any]:
    """Production fetcher: the KDS client of starlock-attestation (Milan, VCEK or VLEK chain)."""
    from starlock.attestation.snp.kds import KdsClient
    from starlock.attestation.snp.report import SigningKey

    client = KdsClient()

    def fetch(variant: Variant) -> Any:
        signing = SigningKey.VLEK if variant is Variant.AWS_SEV_SNP else SigningKey.VCEK
        return client.cert_chain("Milan", signing)

    return fetch
