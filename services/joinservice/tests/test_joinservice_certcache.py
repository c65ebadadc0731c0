"""The SEV-SNP ASK/ARK cache in ConfigMap kube-system/sev-snp-cert-cache (spec §2.11), through the
join service's own ServiceAccount (so the shipped role's update right is exercised)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Cluster
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from starlock.attestation import Variant
from starlock.joinservice import certcache
from starlock.joinservice.kube import KubeAdapter, new_api_client

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def milan_chain() -> SimpleNamespace:
    """The Milan ASK and ARK from the shared vectors (what the KDS client returns after its checks)."""
    env = os.environ.get("STARLOCK_VECTORS")
    folder = Path(env) if env else REPO.parent / "shared" / "vectors"
    pem = folder / "other" / "amd-kds-roots" / "ask_ark_milan.pem"
    if not pem.is_file():
        message = f"vectors not found ({pem}); set STARLOCK_VECTORS"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    ask, ark = x509.load_pem_x509_certificates(pem.read_bytes())[:2]
    return SimpleNamespace(intermediate=ask, ark=ark)


@pytest.fixture
def store(cluster: Cluster) -> Iterator[KubeAdapter]:
    core = client.CoreV1Api(cluster.admin)
    yield KubeAdapter(new_api_client(cluster.service_kubeconfig))
    try:
        core.delete_namespaced_config_map("sev-snp-cert-cache", "kube-system")
    except client.ApiException as exc:
        assert exc.status == 404


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_fetched_once_then_cached(store: KubeAdapter, cluster: Cluster, milan_chain: SimpleNamespace) -> None:
    fetches: list[Variant] = []
    results: list[bool] = []

    def fetch(variant: Variant) -> SimpleNamespace:
        fetches.append(variant)
        return milan_chain

    ask = certcache.ask_from_cache(store, fetch, Variant.AZURE_SEV_SNP, results.append)
    assert ask == _pem(milan_chain.intermediate)
    cm = client.CoreV1Api(cluster.admin).read_namespaced_config_map("sev-snp-cert-cache", "kube-system")
    assert cm.data == {"ask": _pem(milan_chain.intermediate), "ark": _pem(milan_chain.ark)}
    assert certcache.ask_from_cache(store, fetch, Variant.AZURE_SEV_SNP, results.append) == ask
    assert fetches == [Variant.AZURE_SEV_SNP] and results == [True]


def test_missing_key_is_filled_by_update(store: KubeAdapter, cluster: Cluster, milan_chain: SimpleNamespace) -> None:
    """Upstream's role could not update ConfigMaps, so this path always failed there."""
    core = client.CoreV1Api(cluster.admin)
    core.create_namespaced_config_map(
        "kube-system", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="sev-snp-cert-cache"), data={"ark": "kept"})
    )
    ask = certcache.ask_from_cache(store, lambda _v: milan_chain, Variant.AWS_SEV_SNP, lambda _ok: None)
    assert ask == _pem(milan_chain.intermediate)
    data = core.read_namespaced_config_map("sev-snp-cert-cache", "kube-system").data
    assert data == {"ark": "kept", "ask": ask}  # only the missing key was written


def test_fetch_failure_is_fatal_and_counted(store: KubeAdapter) -> None:
    results: list[bool] = []

    def broken(_variant: Variant) -> SimpleNamespace:
        raise OSError("KDS unreachable")

    with pytest.raises(certcache.JoinServiceError, match="AMD KDS"):
        certcache.ask_from_cache(store, broken, Variant.AZURE_SEV_SNP, results.append)
    assert results == [False]


def test_other_variants_need_no_cache(store: KubeAdapter) -> None:
    def never(_variant: Variant) -> SimpleNamespace:
        raise AssertionError("no fetch for a TPM-only variant")

    assert certcache.ask_from_cache(store, never, Variant.QEMU_VTPM, lambda _ok: None) == ""
    assert store.read_cert_cache() is None
