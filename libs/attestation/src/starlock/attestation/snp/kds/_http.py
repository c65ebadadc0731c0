"""HTTP for the KDS client: pacing, bounded retries with ``Retry-After``, size-limited responses."""

from __future__ import annotations

import datetime
import email.utils
import http.client
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

import attrs

from starlock.attestation.errors import ConfigError
from starlock.attestation.snp.kds._common import KdsError, KdsNotFound, KdsUnavailable, log

__all__ = ["RetryPolicy", "parse_retry_after"]

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


# --- retry policy ---------------------------------------------------------------------------------


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


# --- requests -------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx surfaces as an HTTPError: the KDS does not redirect


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen
class _Response:
    status: int  # 0 for a network failure
    outcome: str
    body: bytes | None = None
    retry_after: str | None = None


class Fetcher:
    """GETs KDS URLs for one client: all requests paced, failures retried within ``retry``'s bounds.

    ``clock``/``sleep`` are monotonic seconds, ``wall_clock`` is for ``Retry-After`` dates.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        proxies: Mapping[str, str] | None,
        timeout: float,
        max_response_size: int,
        retry: RetryPolicy,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        wall_clock: Callable[[], datetime.datetime],
    ) -> None:
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler(None if proxies is None else dict(proxies)),
            urllib.request.HTTPSHandler(context=ssl_context),
            _NoRedirect(),
        )
        self._timeout, self._max_size, self._retry = timeout, max_response_size, retry
        self._clock, self._sleep, self._wall_clock = clock, sleep, wall_clock
        self._pace_lock = threading.Lock()
        self._next_slot = float("-inf")

    def fetch(self, url: str, what: str) -> bytes:
        """The body of a 200 answer; 404 is :class:`KdsNotFound`, other failures :class:`KdsError`."""
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
            log.info("KDS request %s: %s; retrying in %.1fs (attempt %d)", url, last, wait, attempt)
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
        log.info("KDS fetch %s", url)
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
