"""Build a KMS from URIs (upstream ``internal/kms/setup.KMS``)."""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from starlock.kms.cluster import ClusterKMS
from starlock.kms.interface import KMS, KmsNotSupported
from starlock.kms.uri import (
    NO_STORE_URI,
    AwsKmsConfig,
    AzureKmsConfig,
    ClusterKmsConfig,
    GcpKmsConfig,
    NoStoreConfig,
    VaultKmsConfig,
    parse_kms_uri,
    parse_storage_uri,
)

__all__ = ["open_kms"]


class _VaultModule(Protocol):
    def open_vault_kms(self, uri: str) -> KMS: ...


def open_kms(kms_uri: str, storage_uri: str = NO_STORE_URI, *, check_lengths: bool = False) -> KMS:
    """Return the KMS a pair of URIs selects.

    * ``kms://cluster-kms?...`` -> :class:`~starlock.kms.cluster.ClusterKMS` (the storage URI
      is parsed and then ignored, as upstream). ``check_lengths=True`` also enforces the key
      service's 16/32-byte minimums.
    * ``kms://vault?...`` -> ``starlock.kms.vault.open_vault_kms(kms_uri)`` (imported lazily; the
      Vault backend keeps its own key store, so the storage URI must be ``storage://no-store``).
    * aws/azure/gcp parse, then raise :class:`~starlock.kms.interface.KmsNotSupported`.

    Raises only :class:`~starlock.kms.interface.KmsConfigError` (and subclasses) for bad input.
    """
    kms_config = parse_kms_uri(kms_uri)
    storage_config = parse_storage_uri(storage_uri)
    if isinstance(kms_config, ClusterKmsConfig):
        if check_lengths:
            kms_config.master_secret.check_lengths()
        return ClusterKMS(kms_config.master_secret.key, kms_config.master_secret.salt)
    if not isinstance(storage_config, NoStoreConfig):
        raise KmsNotSupported("storage backends (aws, azure, gcp) are not supported; use storage://no-store")
    if isinstance(kms_config, VaultKmsConfig):
        try:
            vault = cast(_VaultModule, importlib.import_module("starlock.kms.vault"))
        except ModuleNotFoundError as e:
            if e.name in ("starlock.kms.vault", "starlock.kms"):
                raise KmsNotSupported("kms://vault: the Vault backend (starlock.kms.vault) is not installed") from None
            raise KmsNotSupported(f"kms://vault: the Vault backend needs module {e.name!r}, not installed") from None
        return vault.open_vault_kms(kms_config.uri)
    names = {AwsKmsConfig: "aws", AzureKmsConfig: "azure", GcpKmsConfig: "gcp"}
    raise KmsNotSupported(f"kms://{names[type(kms_config)]} is not supported by Starlock; use cluster-kms or vault")
