"""External KMS on Vault/OpenBao Transit (user-managed key encryption key).

DEKs are random, wrapped by a Transit key (the KEK never leaves the server) and stored wrapped,
in Vault KV v2 or in a local directory. Build one with :func:`open_vault_kms` from a
``kms://vault?...`` URI (format in the package README, section "External KMS"). Needs the ``hvac`` client library.
"""

from __future__ import annotations

from starlock.kms.vault._config import VaultBackendConfig, parse_vault_uri
from starlock.kms.vault._errors import DekLengthMismatch, VaultStoreError, WrappedKeyError
from starlock.kms.vault._kms import VaultKMS, open_vault_kms, open_vault_kms_from_config
from starlock.kms.vault._store import (
    DirectoryWrappedKeyStore,
    KvWrappedKeyStore,
    WrappedKey,
    WrappedKeyStore,
)

__all__ = [
    "DekLengthMismatch",
    "DirectoryWrappedKeyStore",
    "KvWrappedKeyStore",
    "VaultBackendConfig",
    "VaultKMS",
    "VaultStoreError",
    "WrappedKey",
    "WrappedKeyError",
    "WrappedKeyStore",
    "open_vault_kms",
    "open_vault_kms_from_config",
    "parse_vault_uri",
]
