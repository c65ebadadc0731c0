"""The Vault/OpenBao KMS: random DEKs wrapped by a Transit key and kept in a wrapped-key store.

``get_dek(dek_id, length)``:

1. look the id up in the store; if present, check its length and id, unwrap it with Transit
   ``decrypt`` and return it;
2. if absent, draw ``length`` bytes from the OS CSPRNG, wrap them with Transit ``encrypt`` and
   store the result with create-if-absent; if another caller stored one first, unwrap and
   return that one instead (so all concurrent callers get the same key).

The wrapped key is bound to its id and length: Transit gets ``aad(dek_id, length)`` as
``associated_data`` (AEAD keys) and as ``context`` (derived keys), so a ciphertext moved to
another id or length does not decrypt; the stored record also repeats the id and is checked.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from starlock.kms.interface import MAX_DEK_LENGTH, KmsConfigError, KmsError, KmsInvalidArgument
from starlock.kms.vault._client import VaultClient
from starlock.kms.vault._config import VaultBackendConfig, parse_vault_uri
from starlock.kms.vault._errors import DekLengthMismatch, WrappedKeyError
from starlock.kms.vault._store import (
    DirectoryWrappedKeyStore,
    KvWrappedKeyStore,
    WrappedKey,
    WrappedKeyStore,
    entry_name,
)

__all__ = ["VaultKMS", "open_vault_kms", "wrap_aad"]

_log = logging.getLogger("starlock.kms.vault")
_AAD_LABEL = b"starlock-wrapped-dek-v1\x00"
MAX_TOKEN_FILE_BYTES = 16 * 1024


def wrap_aad(dek_id: str, length: int) -> bytes:
    """Associated data binding a wrapped DEK to its id and length (unambiguous encoding)."""
    raw = dek_id.encode("utf-8")
    return _AAD_LABEL + len(raw).to_bytes(4, "big") + raw + length.to_bytes(4, "big")


class VaultKMS:
    """Implements :class:`~starlock.kms.interface.KMS` with a Transit key and a wrapped-key store."""

    def __init__(self, client: VaultClient, key_name: str, store: WrappedKeyStore) -> None:
        self._client = client
        self._key_name = key_name
        self._store = store
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"VaultKMS(address={self._client.address!r}, key_name={self._key_name!r}, store={self._store!r})"

    def get_dek(self, dek_id: str, length: int) -> bytes:
        if self._closed.is_set():
            raise KmsError("vault KMS is closed")
        entry_name(dek_id)  # validates the id
        if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_DEK_LENGTH:
            raise KmsInvalidArgument(f"key length must be between 1 and {MAX_DEK_LENGTH} bytes, got {length!r}")

        stored = self._store.get(dek_id)
        if stored is None:
            dek = os.urandom(length)
            ciphertext = self._client.transit_encrypt(dek, wrap_aad(dek_id, length))
            candidate = WrappedKey(dek_id=dek_id, length=length, transit_key=self._key_name, ciphertext=ciphertext)
            stored = self._store.put_if_absent(candidate)
            if stored == candidate:
                _log.info("created wrapped DEK %r (%d bytes) with transit key %r", dek_id, length, self._key_name)
                return dek
            _log.info("DEK %r was created concurrently by another caller; using that one", dek_id)
        return self._unwrap(stored, length)

    def _unwrap(self, stored: WrappedKey, length: int) -> bytes:
        if stored.length != length:
            raise DekLengthMismatch(
                f"DEK {stored.dek_id!r} is stored with length {stored.length} bytes, requested {length}"
            )
        if stored.transit_key != self._key_name:
            raise WrappedKeyError(
                f"DEK {stored.dek_id!r} was wrapped with transit key {stored.transit_key!r}, "
                f"but this KMS uses {self._key_name!r}"
            )
        dek = self._client.transit_decrypt(stored.ciphertext, wrap_aad(stored.dek_id, stored.length))
        if len(dek) != stored.length:
            raise WrappedKeyError(f"DEK {stored.dek_id!r} unwrapped to {len(dek)} bytes, its record says {length}")
        return dek

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._store.close()
        self._client.close()


def open_vault_kms(uri: str) -> VaultKMS:
    """Build the Vault/OpenBao KMS of a ``kms://vault?...`` URI (see :mod:`._config`).

    Reads the token file and prepares the store; does not contact the server (the first
    ``get_dek`` does). Raises :class:`KmsConfigError` for a bad URI, token file or store directory.
    """
    config = parse_vault_uri(uri)
    return open_vault_kms_from_config(config)


def open_vault_kms_from_config(config: VaultBackendConfig) -> VaultKMS:
    """Like :func:`open_vault_kms`, from a parsed configuration."""
    token = config.token if config.token is not None else _read_token_file(config.token_file)
    client = VaultClient(config, token)
    store: WrappedKeyStore
    if config.store_dir is not None:
        try:
            store = DirectoryWrappedKeyStore(config.store_dir)
        except KmsError as exc:
            raise KmsConfigError(f"vault KMS URI: 'storeDir' unusable: {exc}") from None
    else:
        store = KvWrappedKeyStore(client, config.kv_prefix)
    return VaultKMS(client, config.key_name, store)


def _read_token_file(path: str | None) -> str:
    if path is None:
        raise KmsConfigError("vault KMS URI: give exactly one of 'token' and 'tokenFile'")
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise KmsConfigError(f"vault KMS: cannot read 'tokenFile' {path!r} ({exc.strerror})") from None
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise KmsConfigError(f"vault KMS: 'tokenFile' {path!r} is larger than {MAX_TOKEN_FILE_BYTES} bytes")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KmsConfigError(f"vault KMS: 'tokenFile' {path!r} is not ASCII text (content not shown)") from None
    if not token or any(not (c.isprintable() and not c.isspace()) for c in token):
        raise KmsConfigError(f"vault KMS: 'tokenFile' {path!r} must hold one token on one line (content not shown)")
    return token
