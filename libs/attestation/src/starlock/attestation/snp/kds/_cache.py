"""Certificate caches: the :class:`CertificateCache` protocol, in memory and in a directory."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from starlock.attestation.errors import ConfigError
from starlock.attestation.snp.kds._common import MAX_RESPONSE_SIZE, log

__all__ = ["CertificateCache", "DirectoryCache", "MemoryCache"]


@runtime_checkable
class CertificateCache(Protocol):
    """Bytes by key; keys match ``[A-Za-z0-9][A-Za-z0-9._-]*`` (valid ConfigMap keys, ≤ 253 chars).

    Content is re-checked by :class:`KdsClient` when read, so a cache needs no integrity of its own.
    """

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ConfigError(f"certificate cache key: expected [A-Za-z0-9][A-Za-z0-9._-]{{0,252}}, got {key!r}")
    return key


class MemoryCache:
    """A thread-safe in-process :class:`CertificateCache`."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(_check_key(key))

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[_check_key(key)] = bytes(data)


class DirectoryCache:
    """One file per key under ``path``; atomic writes (temp file, fsync, ``os.replace``).

    I/O problems are logged and treated as a miss (or an unwritten entry), never raised.
    """

    def __init__(self, path: Path, *, max_size: int = MAX_RESPONSE_SIZE) -> None:
        self.path = Path(path)
        self._max_size = max_size

    def get(self, key: str) -> bytes | None:
        target = self.path / _check_key(key)
        try:
            with target.open("rb") as handle:
                data = handle.read(self._max_size + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("certificate cache %s unreadable (%s); treating as a miss", target, exc)
            return None
        if len(data) > self._max_size:
            log.warning("certificate cache %s is larger than %d bytes; treating as a miss", target, self._max_size)
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        target = self.path / _check_key(key)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        except OSError as exc:
            log.warning("certificate cache %s not writable (%s); not caching %s", self.path, exc, key)
            return
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("could not write certificate cache %s (%s)", target, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
