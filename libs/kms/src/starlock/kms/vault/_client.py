"""A narrow, typed adapter around ``hvac``: Transit encrypt/decrypt and KV v2 read/create.

Everything hvac or requests raises is mapped here to the KMS error hierarchy:

* connection refused/reset, timeouts, HTTP 429/502/503 (sealed, standby) -> :class:`KmsUnavailable`
* the caller's deadline (:mod:`starlock.kms.deadline`) already passed -> :class:`KmsUnavailable`
* HTTP 401/403 -> :class:`KmsPermissionDenied`
* anything else, including any HTTP 3xx answer -> :class:`KmsError`

**Redirects are refused.** Every request carries the token (``X-Vault-Token``) and Transit
requests carry a data key; following a redirect would send both to whatever origin the answer
names, https to http included. A 3xx answer is never followed: the request fails with a
:class:`KmsError` that names the operation and the redirect target's origin.

**Timeouts.** Each HTTP request gets the configured ``timeout``, shortened to the time left
before the caller's deadline (:func:`starlock.kms.deadline.time_left`), so a hung server blocks
a call no longer than its caller is willing to wait.

Messages name the operation, the server address and the server's own error text (scrubbed of
the token and of any plaintext sent); never the token or key material.
"""

from __future__ import annotations

import base64
import binascii
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hvac
import hvac.exceptions
import requests
import requests.exceptions

from starlock.kms.deadline import time_left
from starlock.kms.interface import KmsError, KmsPermissionDenied, KmsUnavailable
from starlock.kms.vault._config import VaultBackendConfig
from starlock.kms.vault._errors import WrappedKeyError

__all__ = ["VaultClient"]

_RETRYABLE = (hvac.exceptions.VaultDown, hvac.exceptions.BadGateway, hvac.exceptions.RateLimitExceeded)
_DENIED = (hvac.exceptions.Unauthorized, hvac.exceptions.Forbidden)
_CAS_MISMATCH = "check-and-set parameter did not match"
_MAX_SERVER_TEXT = 300
_MAX_ORIGIN_TEXT = 200
#: Below this many seconds left before the caller's deadline, a request is not even sent.
_MIN_REQUEST_TIME = 0.005


class _RedirectRefused(Exception):
    """Raised by the response hook of :class:`_Session` on any 3xx answer (never followed)."""

    def __init__(self, status: int, origin: str) -> None:
        super().__init__(status, origin)
        self.status = status
        self.origin = origin


class _Session(requests.Session):
    """A requests session that never follows redirects and bounds each request by the deadline."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self.max_redirects = 0
        self.hooks["response"].append(_refuse_redirect)

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        left = time_left()
        kwargs["timeout"] = self._timeout if left is None else max(_MIN_REQUEST_TIME, min(self._timeout, left))
        kwargs["allow_redirects"] = False
        return super().request(*args, **kwargs)


def _refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if 300 <= response.status_code < 400:
        location = response.headers.get("Location")
        origin = _origin(urllib.parse.urljoin(response.url, location)) if location else "no Location header"
        response.close()
        raise _RedirectRefused(response.status_code, origin)


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` (no user info, path or query), printable and bounded."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "an unparsable Location"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return "".join(c if c.isprintable() else "?" for c in origin)[:_MAX_ORIGIN_TEXT]


class VaultClient:
    """Thread-safe access to one Vault/OpenBao server (one hvac client per thread)."""

    def __init__(self, config: VaultBackendConfig, token: str) -> None:
        if not token:
            # hvac would fall back to VAULT_TOKEN / ~/.vault-token; we never want that.
            raise KmsError("vault: empty token")
        self._config = config
        self._token = token
        self._local = threading.local()
        self._clients: list[hvac.Client] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"VaultClient(address={self._config.address!r}, token=<hidden>)"

    @property
    def address(self) -> str:
        return self._config.address

    def _client(self) -> hvac.Client:
        client: hvac.Client | None = getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                if self._closed:
                    raise KmsError("vault KMS is closed")
                client = hvac.Client(
                    url=self._config.address,
                    token=self._token,
                    verify=self._config.ca_file if self._config.ca_file is not None else True,
                    # hvac annotates ``timeout`` as int; requests accepts a float (and _Session
                    # replaces it per request anyway).
                    timeout=self._config.timeout,  # type: ignore[arg-type]
                    allow_redirects=False,
                    session=_Session(self._config.timeout),
                )
                self._clients.append(client)
            self._local.client = client
        return client

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.adapter.close()

    # -- Transit ---------------------------------------------------------------------------

    def transit_encrypt(self, plaintext: bytes, aad: bytes) -> str:
        """Wrap ``plaintext`` with the configured Transit key; ``aad`` is bound to the ciphertext."""
        plaintext_b64 = base64.b64encode(plaintext).decode()
        aad_b64 = base64.b64encode(aad).decode()
        with self._mapped("transit encrypt", plaintext_b64):
            response = self._client().secrets.transit.encrypt_data(
                name=self._config.key_name,
                plaintext=plaintext_b64,
                # ``context`` binds for derived keys, ``associated_data`` for AEAD keys; each is
                # ignored by keys of the other kind, so sending both covers both kinds.
                context=aad_b64,
                associated_data=aad_b64,
                mount_point=self._config.transit_mount,
            )
        ciphertext = _data_field(response, "ciphertext", "transit encrypt")
        if not ciphertext.startswith("vault:v"):
            raise KmsError("vault transit encrypt: response ciphertext has an unexpected format")
        return ciphertext

    def transit_decrypt(self, ciphertext: str, aad: bytes) -> bytes:
        """Unwrap ``ciphertext``; :class:`WrappedKeyError` if it does not authenticate under ``aad``."""
        aad_b64 = base64.b64encode(aad).decode()
        try:
            with self._mapped("transit decrypt"):
                response = self._client().secrets.transit.decrypt_data(
                    name=self._config.key_name,
                    ciphertext=ciphertext,
                    context=aad_b64,
                    associated_data=aad_b64,
                    mount_point=self._config.transit_mount,
                )
        except KmsError as exc:
            if isinstance(exc.__cause__, hvac.exceptions.InvalidRequest):
                raise WrappedKeyError(
                    f"wrapped key does not unwrap with transit key {self._config.key_name!r} for this id "
                    f"(moved from another id, wrong key, or a retired key version): {exc}"
                ) from None
            raise
        plaintext_b64 = _data_field(response, "plaintext", "transit decrypt")
        try:
            return base64.b64decode(plaintext_b64, validate=True)
        except binascii.Error:
            raise KmsError("vault transit decrypt: response plaintext is not base64") from None

    # -- KV v2 -----------------------------------------------------------------------------

    def kv_read(self, path: str) -> dict[str, Any] | None:
        """Latest version of the KV v2 secret at ``path``, or ``None`` if there is none."""
        try:
            with self._mapped("kv read"):
                response = self._client().secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self._config.kv_mount, raise_on_deleted_version=True
                )
        except KmsError as exc:
            if isinstance(exc.__cause__, hvac.exceptions.InvalidPath):
                return None
            raise
        data = _data(response, "kv read").get("data")
        if not isinstance(data, dict):
            raise KmsError("vault kv read: response has no secret data")
        return data

    def kv_create(self, path: str, secret: dict[str, Any]) -> bool:
        """Create the secret at ``path`` only if absent (cas=0). False if it already exists."""
        try:
            with self._mapped("kv create"):
                self._client().secrets.kv.v2.create_or_update_secret(
                    path=path, secret=secret, cas=0, mount_point=self._config.kv_mount
                )
        except KmsError as exc:
            cause = exc.__cause__
            if isinstance(cause, hvac.exceptions.InvalidRequest) and _CAS_MISMATCH in _server_text(cause):
                return False
            raise
        return True

    # -- error mapping ---------------------------------------------------------------------

    @contextmanager
    def _mapped(self, operation: str, *extra_secrets: str) -> Iterator[None]:
        where = f"vault {operation} at {self._config.address}"
        secrets = (self._token, *extra_secrets)
        left = time_left()
        if left is not None and left < _MIN_REQUEST_TIME:
            raise KmsUnavailable(f"{where}: not sent, the caller's deadline has passed; retry later")
        try:
            yield
        except _RedirectRefused as exc:
            raise KmsError(
                f"{where}: the server answered HTTP {exc.status} redirecting to "
                f"{_scrub_text(exc.origin, secrets)}; redirects are refused (they would carry the token "
                "and key material to another origin): set 'address' to the server that answers"
            ) from None
        except requests.exceptions.SSLError as exc:
            raise KmsError(f"{where}: TLS handshake or certificate verification failed") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise KmsUnavailable(f"{where}: server unreachable ({type(exc).__name__}); retry later") from exc
        except requests.exceptions.RequestException as exc:
            raise KmsError(f"{where}: HTTP request failed ({type(exc).__name__})") from exc
        except _DENIED as exc:
            raise KmsPermissionDenied(
                f"{where}: permission denied; check the token and its policy ({_scrub(exc, secrets)})"
            ) from exc
        except _RETRYABLE as exc:
            raise KmsUnavailable(f"{where}: server not ready ({_scrub(exc, secrets)}); retry later") from exc
        except hvac.exceptions.VaultError as exc:
            raise KmsError(f"{where}: {type(exc).__name__} ({_scrub(exc, secrets)})") from exc


def _server_text(exc: hvac.exceptions.VaultError) -> str:
    errors: object = exc.errors
    if isinstance(errors, list):
        return "; ".join(str(e) for e in errors)
    return str(exc.args[0]) if exc.args else ""


def _scrub(exc: hvac.exceptions.VaultError, secrets: tuple[str, ...]) -> str:
    return _scrub_text(_server_text(exc) or "no details", secrets)


def _scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<hidden>")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:_MAX_SERVER_TEXT]


def _data(response: object, operation: str) -> dict[str, Any]:
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict):
        raise KmsError(f"vault {operation}: response has no data")
    return data


def _data_field(response: object, name: str, operation: str) -> str:
    value = _data(response, operation).get(name)
    if not isinstance(value, str) or not value:
        raise KmsError(f"vault {operation}: response has no {name!r}")
    return value
