"""What a request turns into, without I/O: the nonce checks, the issuer call and its failure classes.

Both endpoints (gRPC ``verify.API/GetAttestation`` and HTTP ``GET /?nonce=``) end in
:func:`attest`: the issuer is always called with user data :data:`USER_DATA` (``b"VerifyService"``,
as upstream) and the caller's nonce. Errors say what is wrong with the request, never a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import parse_qsl

from starlock.attestation import AttestationError, Issuer

__all__ = [
    "MAX_NONCE_SIZE",
    "MAX_QUERY_LENGTH",
    "USER_DATA",
    "AttestationFailed",
    "BadRequest",
    "IssuerUnavailable",
    "ShuttingDown",
    "VerificationServiceError",
    "attest",
    "check_nonce",
    "describe_cause",
    "http_body",
    "nonce_from_query",
]

#: The user data every document of this service carries (upstream: ``[]byte("VerifyService")``).
USER_DATA = b"VerifyService"
#: Upstream has no bound; 64 bytes is the largest nonce aTLS accepts too (Starlock deviation).
MAX_NONCE_SIZE = 64
#: Longer query strings are refused before parsing (a 64-byte nonce is 88 base64 characters).
MAX_QUERY_LENGTH = 1024
_MAX_QUERY_FIELDS = 16
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class VerificationServiceError(Exception):
    """Base of this service's errors; the message is safe to send to the caller."""


class BadRequest(VerificationServiceError):
    """The request is malformed (gRPC ``INVALID_ARGUMENT``, HTTP 400)."""


class AttestationFailed(VerificationServiceError):
    """The issuer failed for a reason a retry will not fix (gRPC ``INTERNAL``, HTTP 500)."""


class IssuerUnavailable(AttestationFailed):
    """The TPM cannot be reached right now (gRPC ``UNAVAILABLE``, HTTP 503)."""


class ShuttingDown(VerificationServiceError):
    """The service is draining for a stop (gRPC ``UNAVAILABLE``, HTTP 503)."""


def check_nonce(nonce: bytes) -> bytes:
    """``nonce`` if it is 1..:data:`MAX_NONCE_SIZE` bytes; :class:`BadRequest` otherwise."""
    if not nonce:
        raise BadRequest("nonce is empty")
    if len(nonce) > MAX_NONCE_SIZE:
        raise BadRequest(f"nonce is {len(nonce)} bytes, more than the limit of {MAX_NONCE_SIZE}")
    return nonce


def _decode_b64url(value: str) -> bytes:
    """URL-safe base64, padded (upstream's ``base64.URLEncoding``) or unpadded (accepted here too)."""
    if not _B64URL.fullmatch(value):
        raise BadRequest("nonce is not URL-safe base64 (alphabet A-Z a-z 0-9 - _, optional = padding)")
    bare = value.rstrip("=")
    if (value != bare and len(value) % 4) or len(bare) % 4 == 1:
        raise BadRequest("nonce is not URL-safe base64: wrong length or padding")
    try:
        return base64.b64decode(bare + "=" * (-len(bare) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise BadRequest("nonce is not URL-safe base64") from None


def nonce_from_query(query: str) -> bytes:
    """The nonce of an HTTP query string: parameter ``nonce`` exactly once, base64url, 1..64 bytes."""
    if len(query) > MAX_QUERY_LENGTH:
        raise BadRequest(f"query string is longer than {MAX_QUERY_LENGTH} characters")
    try:
        fields = parse_qsl(query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS, separator="&")
    except ValueError:
        raise BadRequest(f"query string has more than {_MAX_QUERY_FIELDS} fields") from None
    values = [value for name, value in fields if name == "nonce"]
    if not values:
        raise BadRequest("query parameter nonce is missing")
    if len(values) > 1:
        raise BadRequest(f"query parameter nonce is given {len(values)} times; give it exactly once")
    if len(values[0]) > 2 * MAX_NONCE_SIZE:
        raise BadRequest(f"nonce is longer than the limit of {MAX_NONCE_SIZE} bytes")
    return check_nonce(_decode_b64url(values[0]))


def http_body(document: bytes) -> bytes:
    """Upstream's response body: ``{"data":"<standard base64 of the document>"}``."""
    return json.dumps({"data": base64.b64encode(document).decode("ascii")}, separators=(",", ":")).encode()


def _tpm_unreachable(exc: Exception) -> bool:
    # TpmError does not say *why*; opening the TCTI and I/O on it are the cases a retry can fix.
    from starlock.attestation.tpm_device import TpmError, TpmSupportMissing

    if not isinstance(exc, TpmError) or isinstance(exc, TpmSupportMissing):
        return False
    text = str(exc)
    return text.startswith("cannot open the TPM") or "tcti:" in text.lower()


def describe_cause(exc: BaseException) -> str:
    """The chained cause of ``exc`` for a log line: an AttestationError's type and message, else its type."""
    cause = exc.__cause__
    if cause is None:
        return ""
    if isinstance(cause, AttestationError):  # their messages name fields and values, never secrets
        return f"{type(cause).__name__}: {cause}"
    return type(cause).__name__  # anything else: the type only (a message could hold anything)


def attest(issuer: Issuer, nonce: bytes) -> bytes:
    """The issuer's document for (:data:`USER_DATA`, ``nonce``).

    Raises :class:`BadRequest` for a bad nonce, :class:`IssuerUnavailable` when the TPM cannot be
    reached, :class:`AttestationFailed` for any other issuer failure. The cause (type and, for an
    :class:`AttestationError`, its message) is chained for the log, not put in the message.
    """
    check_nonce(nonce)
    try:
        return issuer.issue(USER_DATA, nonce)
    except Exception as exc:
        if _tpm_unreachable(exc):
            raise IssuerUnavailable("the TPM cannot be reached; try again later") from exc
        kind = "attestation" if isinstance(exc, AttestationError) else "unexpected"
        raise AttestationFailed(f"issuing the attestation document failed ({kind} error)") from exc
