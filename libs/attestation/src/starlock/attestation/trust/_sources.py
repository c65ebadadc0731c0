"""Where certificate bytes come from: the evidence, a user-supplied bundle, or a cached fetch.

The fetch adapter does no networking itself: the caller injects ``fetch(url) -> bytes`` (an HTTPS
client with timeouts and retries, or a test double). Content is checked before it is cached or
returned, so a cache directory never holds (or serves) certificates that fail that check.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509

from starlock.attestation.errors import CertificateChainError, ConfigError, MalformedEvidence
from starlock.attestation.trust._certs import MAX_BUNDLE_SIZE, load_certificates
from starlock.attestation.trust._store import TrustStore

__all__ = ["BundleFile", "CachedFetcher", "CertificateSource", "EvidenceCertificates", "FetchedCertificates"]

_log = logging.getLogger(__name__)

Check = Callable[[Sequence[x509.Certificate]], None]


@runtime_checkable
class CertificateSource(Protocol):
    """Anything that yields certificates; what is trusted is decided later, by a TrustStore."""

    def certificates(self) -> list[x509.Certificate]: ...


class EvidenceCertificates:
    """Certificates carried in the evidence (a PEM chain or a DER certificate)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def certificates(self) -> list[x509.Certificate]:
        return load_certificates(self._data)


class BundleFile:
    """A PEM bundle or DER certificate file named by the user. Problems raise ConfigError."""

    def __init__(self, path: Path, *, max_size: int = MAX_BUNDLE_SIZE) -> None:
        self.path = Path(path)
        self._max_size = max_size

    def certificates(self) -> list[x509.Certificate]:
        try:
            with self.path.open("rb") as handle:
                data = handle.read(self._max_size + 1)
        except OSError as exc:
            raise ConfigError(f"certificate bundle {self.path}: cannot read: {exc.strerror or exc}") from exc
        try:
            return load_certificates(data, max_size=self._max_size)
        except MalformedEvidence as exc:
            raise ConfigError(f"certificate bundle {self.path}: {exc}") from exc


class CachedFetcher:
    """Fetch certificates by URL through ``fetch``, caching checked content under ``cache_dir``.

    ``check`` decides what is acceptable; by default every certificate must be pinned in ``store``
    (for an ARK/ASK ``cert_chain``). A per-chip VCEK is not pinned: pass a ``check`` that verifies
    its chain instead. Cache entries are named by SHA-256 of the URL, written atomically (temp
    file + ``os.replace``), and re-checked when read; an entry that fails is fetched again.
    """

    def __init__(
        self,
        fetch: Callable[[str], bytes],
        cache_dir: Path,
        *,
        store: TrustStore | None = None,
        check: Check | None = None,
        max_size: int = MAX_BUNDLE_SIZE,
    ) -> None:
        self._fetch = fetch
        self.cache_dir = Path(cache_dir)
        self._store = store if store is not None else TrustStore()
        self._check: Check = check if check is not None else self._store.require_pinned
        self._max_size = max_size

    def cache_path(self, url: str) -> Path:
        return self.cache_dir / (hashlib.sha256(url.encode("utf-8")).hexdigest() + ".cert")

    def get(self, url: str) -> list[x509.Certificate]:
        """Certificates for ``url``: from the cache if a valid entry exists, else fetched and cached."""
        cached = self._read_cache(url)
        if cached is not None:
            return cached
        data = self._fetch(url)
        if not isinstance(data, bytes):
            raise MalformedEvidence(f"fetch {url}: expected bytes, got {type(data).__name__}")
        try:
            certs = load_certificates(data, max_size=self._max_size)
            self._check(certs)
        except MalformedEvidence as exc:
            raise MalformedEvidence(f"fetched {url}: {exc}") from exc
        except CertificateChainError as exc:
            raise CertificateChainError(f"fetched {url}: {exc}") from exc
        self._write_cache(url, data)
        return certs

    def source(self, url: str) -> FetchedCertificates:
        return FetchedCertificates(self, url)

    def _read_cache(self, url: str) -> list[x509.Certificate] | None:
        path = self.cache_path(url)
        try:
            with path.open("rb") as handle:
                data = handle.read(self._max_size + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning("certificate cache %s unreadable (%s); fetching %s again", path, exc, url)
            return None
        try:
            certs = load_certificates(data, max_size=self._max_size)
            self._check(certs)
        except (MalformedEvidence, CertificateChainError) as exc:
            _log.warning("certificate cache %s for %s is invalid (%s); fetching again", path, url, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return certs

    def _write_cache(self, url: str, data: bytes) -> None:
        path = self.cache_path(url)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".cert")
        except OSError as exc:
            _log.warning("certificate cache %s not writable (%s); not caching %s", self.cache_dir, exc, url)
            return
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            _log.warning("could not write certificate cache %s (%s)", path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class FetchedCertificates:
    """A :class:`CertificateSource` for one URL of a :class:`CachedFetcher`."""

    def __init__(self, fetcher: CachedFetcher, url: str) -> None:
        self._fetcher = fetcher
        self.url = url

    def certificates(self) -> list[x509.Certificate]:
        return self._fetcher.get(url=self.url)
