"""Microsoft Azure Attestation (MAA) tokens: the azure-sev-snp ID-key fallback (spec-attestation §5a step 5).

Upstream verifies the JWT signature with the JWKS at ``<maaURL>/certs`` and checks only the nonce
claim. Starlock also checks: algorithm RS256 and a known ``kid``; ``exp`` (required), ``nbf`` and
``iat`` with 60 s leeway; ``iss`` equal to the configured MAA URL; ``x-ms-attestation-type``
``sevsnpvm`` and ``x-ms-compliance-status`` ``azure-compliant-cvm``; and, since the token must
speak about *this* report, the SNP claims ``x-ms-sevsnpvm-idkeydigest`` and
``x-ms-sevsnpvm-launchmeasurement`` equal to the verified report's values, and
``x-ms-sevsnpvm-is-debuggable`` false when present. The SNP claims are read from
``x-ms-isolation-tee`` (AzureGuest tokens) or the top level.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from starlock.attestation.errors import (
    AttestationError,
    MalformedEvidence,
    NonceMismatch,
    PolicyViolation,
    SignatureError,
)
from starlock.attestation.snp import AttestationReport
from starlock.attestation.trust import load_certificates

__all__ = [
    "HttpJwksFetcher",
    "JwksFetcher",
    "MaaToken",
    "MaaTokenError",
    "parse_jwks",
    "validate_maa_token",
    "verify_jwt_rs256",
]

MAX_TOKEN = 64 * 1024
MAX_JWKS = 256 * 1024
LEEWAY = datetime.timedelta(seconds=60)


class MaaTokenError(AttestationError):
    """The MAA token is not acceptable (time, issuer, claims)."""

    check = "maa-token"


@runtime_checkable
class JwksFetcher(Protocol):
    """Fetch the MAA signing keys (``GET <maaURL>/certs``); raise an AttestationError on failure."""

    def fetch(self, url: str) -> bytes: ...


class HttpJwksFetcher:
    """urllib adapter for :class:`JwksFetcher`."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = timeout

    def fetch(self, url: str) -> bytes:
        if not _https_or_loopback(url):
            # The MAA signing keys are not pinned (as upstream): TLS is what authenticates them.
            raise MaaTokenError(f"MAA JWKS URL {url!r:.80} must be https:// (plain http only on loopback)")
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:  # noqa: S310 - scheme checked
                body: bytes = response.read(MAX_JWKS + 1)
        except urllib.error.HTTPError as exc:
            raise MaaTokenError(f"MAA JWKS {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise MaaTokenError(f"MAA JWKS {url}: unreachable: {exc}") from None
        if len(body) > MAX_JWKS:
            raise MaaTokenError(f"MAA JWKS {url}: larger than {MAX_JWKS} bytes")
        return body


def _https_or_loopback(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _b64url(part: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"MAA token: {what} is not base64url") from None


def parse_jwks(data: bytes) -> dict[str, rsa.RSAPublicKey]:
    """``{"keys": [{"kid", "x5c": [b64 DER, ...]} | {"kid", "kty": "RSA", "n", "e"}]}`` → kid → key.

    As upstream, the public key of ``x5c[0]`` is used; its chain is not validated.
    """
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MaaTokenError(f"MAA JWKS: not JSON: {exc}") from None
    keys_raw = obj.get("keys") if isinstance(obj, dict) else None
    if not isinstance(keys_raw, list):
        raise MaaTokenError("MAA JWKS: no 'keys' list")
    keys: dict[str, rsa.RSAPublicKey] = {}
    for entry in keys_raw[:64]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        key: object = None
        x5c = entry.get("x5c")
        if isinstance(x5c, list) and x5c and isinstance(x5c[0], str):
            try:
                der = base64.b64decode(x5c[0], validate=True)
                key = load_certificates(der, max_certs=1)[0].public_key()
            except (binascii.Error, ValueError, AttestationError):
                continue
        elif entry.get("kty") == "RSA" and isinstance(entry.get("n"), str) and isinstance(entry.get("e"), str):
            n = int.from_bytes(_b64url(entry["n"], "JWK n"), "big")
            e = int.from_bytes(_b64url(entry["e"], "JWK e"), "big")
            try:
                key = rsa.RSAPublicNumbers(e, n).public_key()
            except ValueError:
                continue
        if isinstance(key, rsa.RSAPublicKey):
            keys[entry["kid"]] = key
    return keys


@attrs.frozen
class MaaToken:
    header: Mapping[str, Any]
    claims: Mapping[str, Any]


def _time_claim(claims: Mapping[str, Any], name: str) -> datetime.datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**40:
        raise MaaTokenError(f"MAA token: claim {name} is not a NumericDate")
    return datetime.datetime.fromtimestamp(value, datetime.UTC)


def verify_jwt_rs256(token: str, keys: Mapping[str, rsa.RSAPublicKey], at: datetime.datetime) -> MaaToken:
    """Verify a compact JWS (RS256, header ``kid`` among ``keys``) and its time claims at ``at``."""
    if len(token) > MAX_TOKEN:
        raise MalformedEvidence(f"MAA token: {len(token)} characters, at most {MAX_TOKEN}")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedEvidence(f"MAA token: expected 3 dot-separated parts, got {len(parts)}")
    try:
        header = json.loads(_b64url(parts[0], "header"))
        claims = json.loads(_b64url(parts[1], "payload"))
    except (ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"MAA token: header or payload is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise MalformedEvidence("MAA token: header and payload must be JSON objects")
    if header.get("alg") != "RS256":
        raise SignatureError(f"MAA token: algorithm {header.get('alg')!r:.20}, expected RS256", check="maa-token")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise SignatureError(f"MAA token: kid {kid!r:.80} is not in the MAA JWKS", check="maa-token")
    try:
        key.verify(
            _b64url(parts[2], "signature"), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise SignatureError("MAA token: RS256 signature does not verify", check="maa-token") from None
    when = at.astimezone(datetime.UTC)
    exp, nbf, iat = (_time_claim(claims, n) for n in ("exp", "nbf", "iat"))
    if exp is None:
        raise MaaTokenError("MAA token: no exp claim")
    if when > exp + LEEWAY:
        raise MaaTokenError(f"MAA token expired at {exp.isoformat()}; verification time {when.isoformat()}")
    if nbf is not None and when < nbf - LEEWAY:
        raise MaaTokenError(f"MAA token not valid before {nbf.isoformat()}; verification time {when.isoformat()}")
    if iat is not None and when < iat - LEEWAY:
        raise MaaTokenError(f"MAA token issued in the future ({iat.isoformat()}); verification time {when.isoformat()}")
    return MaaToken(header, claims)


def _norm(url: str) -> str:
    return url.rstrip("/")


def validate_maa_token(
    token: str,
    *,
    maa_url: str,
    fetcher: JwksFetcher,
    at: datetime.datetime,
    extra_data: bytes | None,
    report: AttestationReport,
) -> MaaToken:
    """Everything the module docstring lists; ``extra_data=None`` skips the nonce (no nonce given)."""
    if not token:
        raise MaaTokenError("no MAA token in the document (Azure.MAAToken is empty)")
    keys = parse_jwks(fetcher.fetch(_norm(maa_url) + "/certs"))
    parsed = verify_jwt_rs256(token, keys, at)
    claims = parsed.claims
    if not isinstance(claims.get("iss"), str) or _norm(claims["iss"]) != _norm(maa_url):
        raise MaaTokenError(f"MAA token issuer {claims.get('iss')!r:.100}, expected {maa_url!r}")
    if extra_data is not None:
        runtime = claims.get("x-ms-runtime")
        payload = runtime.get("client-payload") if isinstance(runtime, dict) else None
        nonce = payload.get("nonce") if isinstance(payload, dict) else None
        expected = base64.b64encode(extra_data).decode()
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), expected.encode()):
            raise NonceMismatch(
                f"MAA token x-ms-runtime.client-payload.nonce {nonce!r:.100}, expected {expected}", check="maa-token"
            )
    tee = claims.get("x-ms-isolation-tee")
    snp = tee if isinstance(tee, dict) else claims
    _claim_equals(snp, "x-ms-attestation-type", "sevsnpvm")
    _claim_equals(snp, "x-ms-compliance-status", "azure-compliant-cvm")
    _claim_equals(snp, "x-ms-sevsnpvm-idkeydigest", report.id_key_digest.hex(), case_insensitive=True)
    _claim_equals(snp, "x-ms-sevsnpvm-launchmeasurement", report.measurement.hex(), case_insensitive=True)
    if snp.get("x-ms-sevsnpvm-is-debuggable", False) is not False:
        raise PolicyViolation("MAA token: x-ms-sevsnpvm-is-debuggable is not false", check="maa-token")
    return parsed


def _claim_equals(claims: Mapping[str, Any], name: str, expected: str, *, case_insensitive: bool = False) -> None:
    value = claims.get(name)
    ok = isinstance(value, str) and (value.lower() == expected.lower() if case_insensitive else value == expected)
    if not ok:
        raise MaaTokenError(f"MAA token claim {name}: expected {expected!r}, got {value!r:.120}")
