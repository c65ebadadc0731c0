"""The KDS client: fetch what is missing, check it, cache it (one fetch per cache key at a time)."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from cryptography import x509

from starlock.attestation.errors import CertificateChainError, ConfigError, MalformedEvidence
from starlock.attestation.snp.certs import amd_trust_store
from starlock.attestation.snp.kds._cache import CertificateCache, MemoryCache
from starlock.attestation.snp.kds._checks import (
    ProductChain,
    SnpCertificates,
    _intermediate_name,
    _one_certificate,
    _Pins,
    check_vcek,
)
from starlock.attestation.snp.kds._common import (
    DEFAULT_BASE_URL,
    MAX_RESPONSE_SIZE,
    KdsError,
    KdsOfflineError,
    _base,
    _kind,
    _product,
    _query,
    _spls,
    cert_chain_url,
    hwid_for,
    log,
    vcek_url,
)
from starlock.attestation.snp.kds._http import Fetcher, RetryPolicy, utcnow
from starlock.attestation.snp.report import Product, SigningKey, TcbParts, TcbVersion
from starlock.attestation.trust import TrustStore, load_certificates

__all__ = ["KdsClient"]

_T = TypeVar("_T")
_DEFAULT_RETRY = RetryPolicy()  # frozen: one shared default, as a default argument would be


class KdsClient:
    """Fetch, check and cache AMD KDS certificates; see the module docstring.

    ``cache`` defaults to a :class:`MemoryCache`. ``ssl_context`` must verify certificates and host
    names (the default does). ``proxies`` None means the environment's proxies. ``clock``/``sleep``
    (monotonic seconds) and ``wall_clock`` (for ``Retry-After`` dates) exist for tests. With
    ``offline=True`` every fetch raises :class:`KdsOfflineError`.
    """

    def __init__(
        self,
        cache: CertificateCache | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        offline: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        proxies: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_response_size: int = MAX_RESPONSE_SIZE,
        retry: RetryPolicy = _DEFAULT_RETRY,
        store: TrustStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
            raise ConfigError("KDS TLS context: certificate and host name verification must be on")
        self.base_url = _base(base_url)
        self.offline = offline
        self.cache: CertificateCache = cache if cache is not None else MemoryCache()
        self._store = store if store is not None else amd_trust_store()
        self._pins = _Pins(self._store)
        self._max_size = max_response_size
        self._http = Fetcher(
            ssl_context=context,
            proxies=proxies,
            timeout=timeout,
            max_response_size=max_response_size,
            retry=retry,
            clock=clock,
            sleep=sleep,
            wall_clock=wall_clock,
        )
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- public API ------------------------------------------------------------------------------

    def cert_chain(self, product: Product | str, signing_key: SigningKey = SigningKey.VCEK) -> ProductChain:
        """The pinned ASK (or ASVK) and ARK of ``product``, from the cache or the KDS."""
        line, kind = _product(product), _kind(signing_key)
        url = cert_chain_url(line, signing_key, base_url=self.base_url)

        def check(data: bytes) -> ProductChain:
            return self._pins.check_chain(load_certificates(data, max_size=self._max_size), line, signing_key)

        return self._cached(f"cert_chain-{kind}-{line}", url, f"{kind} cert_chain for {line}", check)

    def vcek(
        self,
        product: Product | str,
        chip_id: bytes,
        tcb: TcbVersion | TcbParts,
        *,
        chain: ProductChain | None = None,
    ) -> x509.Certificate:
        """The VCEK for ``chip_id`` at ``tcb`` (the report's REPORTED_TCB), checked with :func:`check_vcek`.

        ``chain`` (the ASK and ARK) defaults to :meth:`cert_chain`; a given one must be pinned.
        """
        line = _product(product)
        url = vcek_url(line, chip_id, tcb, base_url=self.base_url)
        if chain is None:
            chain = self.cert_chain(line)
        else:
            self._pins.check_chain([chain.intermediate, chain.ark], line, SigningKey.VCEK)
        checked = chain

        def check(data: bytes) -> x509.Certificate:
            certs = load_certificates(data, max_size=self._max_size)
            if len(certs) != 1:
                raise MalformedEvidence(f"VCEK: expected one certificate, got {len(certs)}")
            check_vcek(certs[0], checked, chip_id, tcb, store=self._store)
            return certs[0]

        hwid, query = hwid_for(line, chip_id).hex(), _query(_spls(line, tcb))
        key = f"vcek-{line}-{hwid}-{query.replace('&', '-').replace('=', '')}"
        return self._cached(key, url, f"VCEK for {line} hwID {hwid} at TCB {query}", check)

    def certificates(
        self,
        product: Product | str,
        *,
        signing_key: SigningKey = SigningKey.VCEK,
        signer: bytes | x509.Certificate | None = None,
        intermediate: bytes | x509.Certificate | None = None,
        ark: bytes | x509.Certificate | None = None,
        chip_id: bytes | None = None,
        tcb: TcbVersion | TcbParts | None = None,
    ) -> SnpCertificates:
        """Complete what the evidence carries, fetching only what is missing.

        Supplied ASK/ASVK and ARK must be the product's pinned ones. A supplied ``signer``
        (VCEK/VLEK) is only parsed: the report verification checks it. A missing VCEK is fetched by
        ``chip_id`` and ``tcb``; a VLEK cannot be fetched (AMD serves VLEKs to cloud providers only).
        """
        line, kind = _product(product), _kind(signing_key)
        leaf = None if signer is None else _one_certificate(signer, kind.upper())
        if leaf is None and signing_key is SigningKey.VLEK:
            raise KdsError(f"VLEK for {line}: not in the evidence, and the KDS serves VLEKs only to cloud providers")
        if leaf is None and (chip_id is None or tcb is None):
            raise ConfigError(f"VCEK for {line}: not in the evidence; fetching it needs chip_id and tcb")
        mid_name = _intermediate_name(line, signing_key)
        mid = None if intermediate is None else _one_certificate(intermediate, mid_name)
        root = None if ark is None else _one_certificate(ark, f"ARK-{line}")
        if mid is not None:
            self._pins.require(mid, line, mid_name)
        if root is not None:
            self._pins.require(root, line, f"ARK-{line}")
        if mid is None or root is None:
            fetched = self.cert_chain(line, signing_key)
            mid = fetched.intermediate if mid is None else mid
            root = fetched.ark if root is None else root
        chain = ProductChain(line, signing_key, mid, root)
        if leaf is None:
            if chip_id is None or tcb is None:  # unreachable: checked above (keeps the types narrow)
                raise ConfigError(f"VCEK for {line}: fetching it needs chip_id and tcb")
            leaf = self.vcek(line, chip_id, tcb, chain=chain)
        return SnpCertificates(chain, leaf)

    # --- caching ---------------------------------------------------------------------------------

    def _cached(self, key: str, url: str, what: str, check: Callable[[bytes], _T]) -> _T:
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one fetch per key: concurrent callers wait and then read the cache
            data = self.cache.get(key)
            if data is not None:
                try:
                    return check(data)
                except (MalformedEvidence, CertificateChainError) as exc:
                    log.warning("certificate cache entry %s is invalid (%s); fetching %s again", key, exc, url)
            data = self._fetch(url, what)
            try:
                value = check(data)
            except MalformedEvidence as exc:
                raise MalformedEvidence(f"KDS response from {url}: {exc}") from exc
            except CertificateChainError as exc:
                raise CertificateChainError(f"KDS response from {url} refused: {exc}") from exc
            self.cache.put(key, data)
            return value

    # --- HTTP ------------------------------------------------------------------------------------

    def _fetch(self, url: str, what: str) -> bytes:
        if self.offline:
            raise KdsOfflineError(f"offline: {what} is not cached and may not be fetched ({url})")
        return self._http.fetch(url, what)
