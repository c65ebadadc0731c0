"""Storage of wrapped DEKs: the :class:`WrappedKeyStore` interface and its two implementations.

* :class:`KvWrappedKeyStore` — Vault/OpenBao KV v2; create-if-absent by check-and-set ``cas=0``,
  so concurrent creators on any number of nodes agree on one entry.
* :class:`DirectoryWrappedKeyStore` — one JSON file per DEK in a local directory (single node);
  written to a temporary file, fsynced, then published with ``os.link`` (fails if the name
  exists), so a reader never sees a partial file and concurrent creators agree on one entry.

Entry names: the DEK id verbatim when it is a plain name (letters, digits, ``_``, ``-``, ``.``,
not starting with ``.``, at most 200 characters), otherwise ``~sha256-<hex of its UTF-8>``
(``~`` never occurs in a verbatim name). The record itself repeats the id, and readers check it.

Each store also holds one **marker** (:data:`MARKER_NAME`, which no DEK entry name can take: it
starts with ``.``), written once when an operator initializes the store; see
:class:`~starlock.kms.vault.VaultKMS` for why a key is never created without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from starlock.kms.interface import MAX_DEK_LENGTH, KmsError, KmsInvalidArgument
from starlock.kms.vault._client import VaultClient
from starlock.kms.vault._errors import WrappedKeyError

__all__ = [
    "DirectoryWrappedKeyStore",
    "KvWrappedKeyStore",
    "WrappedKey",
    "WrappedKeyStore",
    "entry_name",
]

_Marker = dict[str, Any]

RECORD_FORMAT = "starlock-wrapped-dek-v1"
MARKER_NAME = ".starlock-store"
MAX_DEK_ID_BYTES = 1024
MAX_RECORD_BYTES = 64 * 1024
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A DEK wrapped by the Transit key: ``ciphertext`` is Transit's ``vault:v<N>:...`` string."""

    dek_id: str
    length: int
    transit_key: str
    ciphertext: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "dek_id": self.dek_id,
            "length": self.length,
            "transit_key": self.transit_key,
            "ciphertext": self.ciphertext,
        }

    @classmethod
    def from_dict(cls, data: object, expected_dek_id: str) -> WrappedKey:
        """Parse a stored record; :class:`WrappedKeyError` if malformed or not for ``expected_dek_id``."""
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise WrappedKeyError(f"stored entry for DEK {expected_dek_id!r} is not a {RECORD_FORMAT} record")
        dek_id, length = data.get("dek_id"), data.get("length")
        transit_key, ciphertext = data.get("transit_key"), data.get("ciphertext")
        if (
            not isinstance(dek_id, str)
            or not isinstance(length, int)
            or isinstance(length, bool)
            or not 1 <= length <= MAX_DEK_LENGTH
            or not isinstance(transit_key, str)
            or not transit_key
            or not isinstance(ciphertext, str)
            or not ciphertext.startswith("vault:v")
        ):
            raise WrappedKeyError(f"stored entry for DEK {expected_dek_id!r} has missing or malformed fields")
        if dek_id != expected_dek_id:
            raise WrappedKeyError(
                f"stored entry for DEK {expected_dek_id!r} records the id {dek_id!r}; refusing a moved entry"
            )
        return cls(dek_id=dek_id, length=length, transit_key=transit_key, ciphertext=ciphertext)


class WrappedKeyStore(Protocol):
    """Where wrapped DEKs live. Implementations are safe for concurrent use."""

    def get(self, dek_id: str) -> WrappedKey | None:
        """The stored wrapped key for ``dek_id``, or ``None`` if there is none."""
        ...

    def put_if_absent(self, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless an entry for its id exists; return the entry that is stored now.

        When several callers race, exactly one entry wins and every caller gets that one back.
        """
        ...

    def get_marker(self) -> _Marker | None:
        """The store's marker record, or ``None`` if the store has none."""
        ...

    def put_marker_if_absent(self, marker: _Marker) -> _Marker:
        """Store ``marker`` unless one exists; return the marker that is stored now."""
        ...

    def close(self) -> None:
        """Release resources (idempotent)."""
        ...


def entry_name(dek_id: str) -> str:
    """The store name of ``dek_id`` (see module docs). :class:`KmsInvalidArgument` if unusable."""
    if not isinstance(dek_id, str) or not dek_id:
        raise KmsInvalidArgument("DEK id must be a non-empty string")
    try:
        raw = dek_id.encode("utf-8")
    except UnicodeEncodeError:
        raise KmsInvalidArgument("DEK id is not valid Unicode text") from None
    if len(raw) > MAX_DEK_ID_BYTES:
        raise KmsInvalidArgument(f"DEK id is longer than {MAX_DEK_ID_BYTES} bytes")
    if _PLAIN_NAME.fullmatch(dek_id):
        return dek_id
    return "~sha256-" + hashlib.sha256(raw).hexdigest()


class KvWrappedKeyStore:
    """Wrapped keys as KV v2 secrets at ``<kv_mount>/data/<kv_prefix>/<entry name>``."""

    def __init__(self, client: VaultClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"KvWrappedKeyStore(address={self._client.address!r}, prefix={self._prefix!r})"

    def _path(self, dek_id: str) -> str:
        return f"{self._prefix}/{entry_name(dek_id)}"

    def get(self, dek_id: str) -> WrappedKey | None:
        data = self._client.kv_read(self._path(dek_id))
        return None if data is None else WrappedKey.from_dict(data, dek_id)

    def put_if_absent(self, key: WrappedKey) -> WrappedKey:
        if self._client.kv_create(self._path(key.dek_id), key.to_dict()):
            return key
        existing = self.get(key.dek_id)
        if existing is None:
            # cas=0 failed but there is no readable latest version: it was deleted, not destroyed.
            raise KmsError(
                f"KV entry for DEK {key.dek_id!r} exists but its latest version is deleted; "
                "undelete it or remove its metadata"
            )
        return existing

    def get_marker(self) -> _Marker | None:
        return self._client.kv_read(f"{self._prefix}/{MARKER_NAME}")

    def put_marker_if_absent(self, marker: _Marker) -> _Marker:
        if self._client.kv_create(f"{self._prefix}/{MARKER_NAME}", marker):
            return marker
        existing = self.get_marker()
        if existing is None:
            raise KmsError("KV store marker exists but its latest version is deleted; undelete it")
        return existing

    def close(self) -> None:
        """The client is owned by the KMS."""


class DirectoryWrappedKeyStore:
    """Wrapped keys as ``<directory>/<entry name>.json`` files (one node only)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KmsError(f"directory store {str(self._dir)!r}: cannot create ({exc.strerror})") from None
        if not self._dir.is_dir():
            raise KmsError(f"directory store {str(self._dir)!r} is not a directory")

    def __repr__(self) -> str:
        return f"DirectoryWrappedKeyStore({str(self._dir)!r})"

    def _file(self, dek_id: str) -> Path:
        return self._dir / (entry_name(dek_id) + ".json")

    def get(self, dek_id: str) -> WrappedKey | None:
        data = self._read(self._file(dek_id), f"entry for DEK {dek_id!r}")
        return None if data is None else WrappedKey.from_dict(data, dek_id)

    def put_if_absent(self, key: WrappedKey) -> WrappedKey:
        if self._create(self._file(key.dek_id), key.to_dict(), f"entry for DEK {key.dek_id!r}"):
            return key
        existing = self.get(key.dek_id)
        if existing is None:
            raise KmsError(f"directory store: entry for DEK {key.dek_id!r} vanished while being created")
        return existing

    def get_marker(self) -> _Marker | None:
        data = self._read(self._dir / f"{MARKER_NAME}.json", "store marker")
        if data is not None and not isinstance(data, dict):
            raise WrappedKeyError("directory store: the store marker is not a JSON object")
        return data

    def put_marker_if_absent(self, marker: _Marker) -> _Marker:
        if self._create(self._dir / f"{MARKER_NAME}.json", marker, "store marker"):
            return marker
        existing = self.get_marker()
        if existing is None:
            raise KmsError("directory store: the store marker vanished while being created")
        return existing

    def _read(self, path: Path, what: str) -> Any:
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KmsError(f"directory store: cannot read {what} ({exc.strerror})") from None
        if len(raw) > MAX_RECORD_BYTES:
            raise WrappedKeyError(f"stored {what} is larger than {MAX_RECORD_BYTES} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise WrappedKeyError(f"stored {what} is not valid JSON") from None

    def _create(self, final: Path, record: dict[str, Any], what: str) -> bool:
        """Publish ``record`` at ``final`` unless it exists; True if this call created it."""
        tmp = self._dir / f".tmp-{secrets.token_hex(8)}"
        payload = json.dumps(record, sort_keys=True).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)  # atomic create-if-absent of the complete file
                created = True
            except FileExistsError:
                created = False
            self._fsync_dir()
        except OSError as exc:
            raise KmsError(f"directory store: cannot write {what} ({exc.strerror})") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return created

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Nothing to release."""
