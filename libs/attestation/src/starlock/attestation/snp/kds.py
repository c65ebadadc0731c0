"""AMD KDS adapter: fetch ASK/ARK chains and VCEKs, check them, and cache them (spec-attestation §3).

This is the fetching side of architecture principle 2; verification stays pure elsewhere. What is
fetched is checked before it is cached or returned: a ``cert_chain`` must hold the product's
pinned ASK (or ASVK) then its pinned ARK; a VCEK must pass ``snp.verify_chain`` (AMD profile,
VCEK <- ASK <- pinned ARK) and carry the requested hwID and TCB.
Caches sit behind :class:`CertificateCache` (a directory here, a ConfigMap in the join service).
:class:`KdsClient` sends at most one request per cache key at a time, paces requests
(``RetryPolicy.min_interval``), honours ``429``/``Retry-After`` and retries ``5xx`` within a
bounded total wait. Differs from go-sev-guest on purpose: VCEK and VLEK chains are cached under
separate keys (its per-line cache can hand back the wrong intermediate), and ``Retry-After`` is
honoured.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import http.client
import logging
import os
import re
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import attrs
from cryptography import x509

from starlock.attestation.errors import AttestationError, CertificateChainError, ConfigError, MalformedEvidence
from starlock.attestation.snp.certs import amd_trust_store, verify_chain
from starlock.attestation.snp.report import Product, SigningKey, TcbParts, TcbVersion
from starlock.attestation.trust import Family, TrustStore, describe, load_certificates

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_SIZE",
    "CertificateCache",
    "DirectoryCache",
    "KdsClient",
    "KdsError",
    "KdsNotFound",
    "KdsOfflineError",
    "KdsUnavailable",
    "MemoryCache",
    "ProductChain",
    "RetryPolicy",
    "SnpCertificates",
    "cert_chain_url",
    "check_vcek",
    "hwid_for",
    "parse_retry_after",
    "vcek_url",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_BASE_URL = "https://kdsintf.amd.com"
MAX_RESPONSE_SIZE = 64 * 1024
"""Largest KDS response accepted (bytes): a ``cert_chain`` is about 4.6 KiB, a VCEK about 1.4 KiB."""


class KdsError(AttestationError):
    """Fetching from the AMD KDS failed (HTTP error, throttling, bad response, offline)."""

    check = "kds"


class KdsNotFound(KdsError):
    """The KDS answered 404: it has no certificate for this product / chip ID / TCB."""


class KdsUnavailable(KdsError):
    """The KDS kept failing or throttling (429/5xx/network) beyond the retry bounds."""


class KdsOfflineError(KdsError):
    """A certificate is missing and the client is offline, so it may not be fetched."""


def _product(value: Product | str) -> Product:
    if isinstance(value, Product):
        return value
    try:
        return Product.from_name(value)
    except MalformedEvidence as exc:
        raise ConfigError(f"AMD product: {exc}") from None


def _kind(signing_key: SigningKey) -> str:
    if signing_key not in (SigningKey.VCEK, SigningKey.VLEK):
        raise ConfigError(f"KDS signing key: expected VCEK or VLEK, got {signing_key!r}")
    return signing_key.name.lower()


def _spls(product: Product, tcb: TcbVersion | TcbParts) -> TcbParts:
    """The SPLs a VCEK URL names; a :class:`TcbVersion` (REPORTED_TCB) is split with the product's layout."""
    parts = tcb.parts(product.tcb_layout) if isinstance(tcb, TcbVersion) else tcb
    if (parts.fmc is not None) != (product is Product.TURIN):
        raise ConfigError(f"VCEK for {product}: fmcSPL is {'required' if product is Product.TURIN else 'not used'}")
    TcbVersion.compose(parts, product.tcb_layout)  # range check of every part
    return parts


def _query(parts: TcbParts) -> str:
    query = f"blSPL={parts.bootloader}&teeSPL={parts.tee}&snpSPL={parts.snp}&ucodeSPL={parts.microcode}"
    return query if parts.fmc is None else f"{query}&fmcSPL={parts.fmc}"


def _base(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"KDS base URL: expected https://host[:port][/path], got {base_url!r}")
    return base_url.rstrip("/")


def hwid_for(product: Product | str, chip_id: bytes) -> bytes:
    """The hwID a VCEK of ``product`` carries: CHIP_ID (64 bytes), or its first 8 bytes for Turin."""
    line = _product(product)
    chip_id = bytes(chip_id)
    if line is Product.TURIN:
        if len(chip_id) == 64 and not any(chip_id[8:]):
            chip_id = chip_id[:8]
        elif len(chip_id) != 8:
            raise MalformedEvidence(
                f"CHIP_ID for Turin: expected 8 bytes, or 64 bytes with bytes 8..63 zero; got {len(chip_id)} "
                f"bytes {chip_id.hex()}"
            )
    elif len(chip_id) != 64:
        raise MalformedEvidence(f"CHIP_ID for {line}: expected 64 bytes, got {len(chip_id)}")
    if not any(chip_id):
        raise MalformedEvidence("CHIP_ID is all zero (masked by MASK_CHIP_ID): the KDS cannot serve a VCEK for it")
    return chip_id


def vcek_url(
    product: Product | str, chip_id: bytes, tcb: TcbVersion | TcbParts, *, base_url: str = DEFAULT_BASE_URL
) -> str:
    """``{base}/vcek/v1/{Line}/{hex hwID}?blSPL=…&teeSPL=…&snpSPL=…&ucodeSPL=…[&fmcSPL=…]`` (§3).

    ``tcb`` is the report's REPORTED_TCB (or its parts); ``chip_id`` its CHIP_ID.
    """
    line = _product(product)
    return f"{_base(base_url)}/vcek/v1/{line}/{hwid_for(line, chip_id).hex()}?{_query(_spls(line, tcb))}"


def cert_chain_url(
    product: Product | str, signing_key: SigningKey = SigningKey.VCEK, *, base_url: str = DEFAULT_BASE_URL
) -> str:
    """``{base}/vcek/v1/{Line}/cert_chain`` (ASK+ARK) or ``{base}/vlek/v1/{Line}/cert_chain`` (ASVK+ARK)."""
    return f"{_base(base_url)}/{_kind(signing_key)}/v1/{_product(product)}/cert_chain"


# --- Retry-After ----------------------------------------------------------------------------------

_MAX_RETRY_AFTER = 86400.0 * 365


def parse_retry_after(value: str, now: datetime.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None if invalid.

    The value is untrusted: anything unparsable gives None, a past date gives 0, and results are
    capped at one year.
    """
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.isascii() and text.isdigit():
        return min(float(int(text[:12])), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC per RFC 5322
        when = when.replace(tzinfo=datetime.UTC)
    return min(max((when - now).total_seconds(), 0.0), _MAX_RETRY_AFTER)


# --- caches ---------------------------------------------------------------------------------------


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
            _log.warning("certificate cache %s unreadable (%s); treating as a miss", target, exc)
            return None
        if len(data) > self._max_size:
            _log.warning("certificate cache %s is larger than %d bytes; treating as a miss", target, self._max_size)
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        target = self.path / _check_key(key)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        except OSError as exc:
            _log.warning("certificate cache %s not writable (%s); not caching %s", self.path, exc, key)
            return
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            _log.warning("could not write certificate cache %s (%s)", target, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# --- results --------------------------------------------------------------------------------------


@attrs.frozen
class ProductChain:
    """A checked ``cert_chain``: the pinned ASK (or ASVK for VLEK) and the pinned ARK of ``product``."""

    product: Product
    signing_key: SigningKey
    intermediate: x509.Certificate
    ark: x509.Certificate


@attrs.frozen
class SnpCertificates:
    """The certificates to verify a report with: the signer (VCEK/VLEK) and its product chain.

    Hand them to the report verification (``verify_report`` / ``verify_chain``), which checks all.
    """

    chain: ProductChain
    signer: x509.Certificate

    @property
    def certificates(self) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        """(signer, intermediate, ARK), the order of ``VerifiedChain.certificates``."""
        return (self.signer, self.chain.intermediate, self.chain.ark)


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"retry policy {attribute.name}: expected a number >= 0, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not value >= 1:
        raise ConfigError(f"retry policy {attribute.name}: expected an integer >= 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Pacing and retry bounds (seconds). Defaults follow the KDS limit of about one request per 10 s.

    ``min_interval`` spaces all requests of one client; ``max_total_wait`` bounds the waiting of one
    fetch (pacing, ``Retry-After`` and back-off); a wait that would pass it fails at once.
    """

    min_interval: float = attrs.field(default=10.0, validator=_non_negative)
    initial_backoff: float = attrs.field(default=10.0, validator=_non_negative)
    max_backoff: float = attrs.field(default=60.0, validator=_non_negative)
    max_attempts: int = attrs.field(default=5, validator=_positive)
    max_total_wait: float = attrs.field(default=120.0, validator=_non_negative)


# --- checks ---------------------------------------------------------------------------------------


def check_vcek(
    cert: x509.Certificate,
    chain: ProductChain,
    chip_id: bytes,
    tcb: TcbVersion | TcbParts,
    *,
    store: TrustStore | None = None,
) -> None:
    """Check a VCEK before it is cached: AMD profile, VCEK <- ASK <- pinned ARK, requested hwID and SPLs.

    Raises :class:`CertificateChainError` (the ``check`` of the failed step is kept).
    """
    line = chain.product
    try:
        verified = verify_chain(
            cert, chain.intermediate, chain.ark, product=line, signing_key=SigningKey.VCEK, trust_store=store
        )
    except AttestationError as exc:
        raise CertificateChainError(f"VCEK not accepted with the {line} ASK and ARK: {exc}", check=exc.check) from exc
    info, wanted, parts = verified.endorsement, hwid_for(line, chip_id), _spls(line, tcb)
    if info.hwid != wanted:
        got = info.hwid.hex() if info.hwid is not None else None
        raise CertificateChainError(f"VCEK {describe(cert)}: hwID {got}, expected {wanted.hex()}")
    actual = TcbParts(info.bootloader, info.tee, info.snp, info.microcode, info.fmc)
    if actual != parts:
        raise CertificateChainError(f"VCEK {describe(cert)}: TCB {actual.describe()}, expected {parts.describe()}")


def _one_certificate(data: bytes | x509.Certificate, what: str) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    certs = load_certificates(data)
    if len(certs) != 1:
        raise MalformedEvidence(f"{what}: expected one certificate, got {len(certs)}")
    return certs[0]


class _Pins:
    """Which pinned anchor each role of a product's chain must be."""

    def __init__(self, store: TrustStore) -> None:
        self._store = store

    def require(self, cert: x509.Certificate, product: Product, name: str) -> None:
        anchor = self._store.pin_for(cert)
        if anchor is None or anchor.family != _FAMILY[product] or anchor.name != name:
            got = "not pinned" if anchor is None else f"pinned as {anchor.name}"
            raise CertificateChainError(f"expected the pinned {name}, got {describe(cert)} ({got})")

    def check_chain(self, certs: list[x509.Certificate], product: Product, key: SigningKey) -> ProductChain:
        if len(certs) != 2:
            raise CertificateChainError(
                f"{_kind(key)} cert_chain for {product}: expected 2 certificates, got {len(certs)}"
            )
        intermediate, ark = certs
        self.require(intermediate, product, _intermediate_name(product, key))
        self.require(ark, product, f"ARK-{product}")
        return ProductChain(product, key, intermediate, ark)


def _intermediate_name(product: Product, key: SigningKey) -> str:
    """The pin name of the ASK (VCEK) or ASVK (VLEK) of ``product``."""
    return f"{'ASK' if key is SigningKey.VCEK else 'ASVK'}-{product}"


_FAMILY = {Product.MILAN: Family.AMD_MILAN, Product.GENOA: Family.AMD_GENOA, Product.TURIN: Family.AMD_TURIN}


# --- client ---------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx surfaces as an HTTPError: the KDS does not redirect


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
        retry: RetryPolicy = RetryPolicy(),
        store: TrustStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
            raise ConfigError("KDS TLS context: certificate and host name verification must be on")
        self.base_url = _base(base_url)
        self.offline = offline
        self.cache: CertificateCache = cache if cache is not None else MemoryCache()
        self._store = store if store is not None else amd_trust_store()
        self._pins = _Pins(self._store)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler(None if proxies is None else dict(proxies)),
            urllib.request.HTTPSHandler(context=context),
            _NoRedirect(),
        )
        self._timeout, self._max_size, self._retry = timeout, max_response_size, retry
        self._clock, self._sleep, self._wall_clock = clock, sleep, wall_clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._pace_lock = threading.Lock()
        self._next_slot = float("-inf")

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
                    _log.warning("certificate cache entry %s is invalid (%s); fetching %s again", key, exc, url)
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
        policy = self._retry
        deadline = self._clock() + policy.max_total_wait
        backoff, not_before = policy.initial_backoff, float("-inf")
        for attempt in range(1, policy.max_attempts + 1):
            self._pace(url, deadline, not_before)
            response = self._request(url)
            status, last, retry_after = response.status, response.outcome, response.retry_after
            if status == 200 and response.body is not None:
                return response.body
            if status == 404:
                raise KdsNotFound(f"KDS has no {what} (HTTP 404 from {url}); check the chip ID, product and TCB")
            if status and status != 429 and status < 500:
                raise KdsError(f"KDS request {url} failed: HTTP {status}")
            wait = backoff
            if status == 429 and retry_after is not None:
                parsed = parse_retry_after(retry_after, self._wall_clock())
                wait = parsed if parsed is not None else backoff
            backoff = min(backoff * 2, policy.max_backoff)
            if attempt == policy.max_attempts:
                raise KdsUnavailable(f"KDS request {url} failed {attempt} times; last: {last}")
            if self._clock() + wait > deadline:
                raise KdsUnavailable(
                    f"KDS request {url}: {last}; waiting {wait:.1f}s more would exceed the bound of "
                    f"{policy.max_total_wait:.1f}s"
                )
            _log.info("KDS request %s: %s; retrying in %.1fs (attempt %d)", url, last, wait, attempt)
            not_before = self._clock() + wait
            if status == 429:  # the throttle is per client address: every request waits
                with self._pace_lock:
                    self._next_slot = max(self._next_slot, not_before)
        raise KdsUnavailable(f"KDS request {url}: no attempts allowed (max_attempts={policy.max_attempts})")

    def _pace(self, url: str, deadline: float, not_before: float) -> None:
        with self._pace_lock:
            now = self._clock()
            start = max(now, self._next_slot, not_before)
            if start > deadline:
                raise KdsUnavailable(
                    f"KDS request {url}: the next request slot is {start - now:.1f}s away, beyond the bound of "
                    f"{self._retry.max_total_wait:.1f}s"
                )
            self._next_slot = start + self._retry.min_interval
        if start > now:
            self._sleep(start - now)

    def _request(self, url: str) -> _Response:
        _log.info("KDS fetch %s", url)
        request = urllib.request.Request(url, headers={"User-Agent": "starlock-kds/1", "Accept": "*/*"})  # noqa: S310
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > self._max_size:
                    raise KdsError(f"KDS response from {url}: {length} bytes, more than {self._max_size}")
                body: bytes = response.read(self._max_size + 1)
                if len(body) > self._max_size:
                    raise KdsError(f"KDS response from {url}: more than {self._max_size} bytes")
                return _Response(int(response.status), f"HTTP {response.status}", body)
        except urllib.error.HTTPError as exc:
            try:
                return _Response(exc.code, f"HTTP {exc.code}", retry_after=exc.headers.get("Retry-After"))
            finally:
                exc.close()
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise KdsError(f"KDS {url}: TLS certificate verification failed: {exc.reason}") from exc
            return _Response(0, f"network error: {exc.reason}")
        except (OSError, http.client.HTTPException) as exc:
            return _Response(0, f"network error: {exc!r}")


@attrs.frozen
class _Response:
    status: int  # 0 for a network failure
    outcome: str
    body: bytes | None = None
    retry_after: str | None = None
