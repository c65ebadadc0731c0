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

**No new key without proof that nothing was lost.** A missing entry looks the same whether the
id is new or the store was reset, and Transit ``encrypt`` silently re-creates a missing key
encryption key; serving a fresh random key for an existing disk id loses that disk. So a store
is *initialized* once, by an operator (:meth:`VaultKMS.initialize_store`,
``starlock-keyservice --initialize-vault-store``): that writes a marker holding a random store
id wrapped by the KEK (the canary). Before every key *creation* the marker is read and the canary
unwrapped: a store that was reset (no marker) or a KEK that was deleted or replaced (the canary
does not unwrap) is refused with :class:`VaultStoreError` (gRPC ``FAILED_PRECONDITION``), and
nothing is written. Existing keys are served as before (their unwrapping proves the KEK).
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from pathlib import Path

from starlock.kms.interface import MAX_DEK_LENGTH, KmsConfigError, KmsError, KmsInvalidArgument
from starlock.kms.vault._client import VaultClient
from starlock.kms.vault._config import VaultBackendConfig, parse_vault_uri
from starlock.kms.vault._errors import DekLengthMismatch, VaultStoreError, WrappedKeyError
from starlock.kms.vault._store import (
    DirectoryWrappedKeyStore,
    KvWrappedKeyStore,
    WrappedKey,
    WrappedKeyStore,
    entry_name,
)

__all__ = ["VaultKMS", "open_vault_kms", "wrap_aad"]

MARKER_FORMAT = "starlock-vault-store-v1"
_MARKER_AAD = b"starlock-vault-store-marker-v1\x00"
_STORE_ID_BYTES = 16

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
            self._check_store()  # a missing entry may mean a lost store: prove it is not
            dek = os.urandom(length)
            ciphertext = self._client.transit_encrypt(dek, wrap_aad(dek_id, length))
            candidate = WrappedKey(dek_id=dek_id, length=length, transit_key=self._key_name, ciphertext=ciphertext)
            stored = self._store.put_if_absent(candidate)
            if stored == candidate:
                _log.info("created wrapped DEK %r (%d bytes) with transit key %r", dek_id, length, self._key_name)
                return dek
            _log.info("DEK %r was created concurrently by another caller; using that one", dek_id)
        return self._unwrap(stored, length)

    def initialize_store(self) -> bool:
        """Mark the store as initialized (once, by an operator); True if this call did it.

        Writes the marker with a canary wrapped by the KEK. This is the only call that may let
        Transit create a missing KEK. Idempotent: on an initialized store it only checks the
        marker (and raises :class:`VaultStoreError` if its canary no longer unwraps).
        """
        if self._closed.is_set():
            raise KmsError("vault KMS is closed")
        existing = self._store.get_marker()
        if existing is None:
            store_id = os.urandom(_STORE_ID_BYTES)
            marker = {
                "format": MARKER_FORMAT,
                "transit_key": self._key_name,
                "store_id": store_id.hex(),
                "canary": self._client.transit_encrypt(store_id, _MARKER_AAD + store_id),
            }
            stored = self._store.put_marker_if_absent(marker)
            if stored == marker:
                _log.warning(
                    "initialized the wrapped-key store %r for transit key %r; keep a backup of the store",
                    self._store,
                    self._key_name,
                )
                return True
        self._check_store()
        return False

    def _check_store(self) -> None:
        marker = self._store.get_marker()
        if marker is None:
            raise VaultStoreError(
                f"the wrapped-key store {self._store!r} has no Starlock marker: it was never initialized, "
                "or it was reset or replaced and every key in it is lost. A new store: run "
                "'starlock-keyservice --initialize-vault-store' once. A lost store: restore it from backup; "
                "no key is created until then"
            )
        if (
            not isinstance(marker, dict)
            or marker.get("format") != MARKER_FORMAT
            or not isinstance(marker.get("store_id"), str)
            or not isinstance(marker.get("canary"), str)
        ):
            raise VaultStoreError(f"the wrapped-key store {self._store!r} has a malformed marker")
        if marker.get("transit_key") != self._key_name:
            raise VaultStoreError(
                f"the wrapped-key store {self._store!r} was initialized for transit key "
                f"{marker.get('transit_key')!r}, but this KMS uses {self._key_name!r}"
            )
        try:
            store_id = bytes.fromhex(marker["store_id"])
        except ValueError:
            raise VaultStoreError(f"the wrapped-key store {self._store!r} has a malformed marker") from None
        if len(store_id) != _STORE_ID_BYTES:  # an empty id would match the b"" of a refused canary below
            raise VaultStoreError(
                f"the wrapped-key store {self._store!r} has a malformed marker: its store id is "
                f"{len(store_id)} bytes, not {_STORE_ID_BYTES}"
            )
        try:
            unwrapped = self._client.transit_decrypt(marker["canary"], _MARKER_AAD + store_id)
        except WrappedKeyError:  # Transit refused it: the key is missing or other key material
            unwrapped = b""
        if not hmac.compare_digest(unwrapped, store_id):
            raise VaultStoreError(
                f"transit key {self._key_name!r} does not unwrap the marker of {self._store!r}: the key was "
                "deleted or replaced (e.g. a reset Transit mount), so wrapped keys cannot be trusted; "
                "restore the key from backup. No key is created until then"
            )

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
