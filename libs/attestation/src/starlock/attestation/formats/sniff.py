"""Say what an input is, for messages that tell a user what they passed and what to pass instead.

:func:`describe_input` never raises and reads at most a bounded prefix of anything; it is only
used to explain a refusal, never to decide what is trusted.
"""

from __future__ import annotations

import json
import re
import struct

from starlock.attestation.errors import AttestationError

__all__ = ["describe_input", "json_error", "looks_like_json", "pem_labels"]

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")
_HEX = re.compile(rb"[0-9a-fA-F\s]+")
_B64 = re.compile(rb"[A-Za-z0-9+/=_\-\s]+")
_SNP_REPORT_SIZE = 0x4A0
_MAX_KEYS_SHOWN = 6


def pem_labels(data: bytes) -> list[str]:
    """The labels of the PEM BEGIN lines in ``data`` (at most 64)."""
    return [m.decode() for m in _PEM_BEGIN.findall(data[: 4 * 1024 * 1024])][:64]


def looks_like_json(data: bytes) -> bool:
    """Text whose first non-blank character opens a JSON object or array."""
    return data.lstrip()[:1] in (b"{", b"[")


def json_error(data: bytes) -> str | None:
    """None when ``data`` parses as JSON, else the error with its line and column."""
    try:
        json.loads(data)
    except json.JSONDecodeError as exc:
        return f"line {exc.lineno} column {exc.colno}: {exc.msg}"
    except (ValueError, RecursionError) as exc:
        return str(exc)[:200]
    return None


def describe_input(data: bytes, *, _depth: int = 0) -> str:
    """A short description of ``data``: empty, PEM (which blocks), JSON (which keys), an HCL report,
    an SNP report, a DER certificate, hex or base64 text (of what), text or binary."""
    if not data.strip():
        return "an empty file" if not data else "a file with only white space"
    labels = pem_labels(data)
    if labels:
        kinds = sorted(set(labels))
        return f"PEM with {len(labels)} block{'s' if len(labels) != 1 else ''} ({', '.join(kinds)})"
    if looks_like_json(data):
        return _describe_json(data)
    return _describe_binary(data) or _describe_text(data, _depth)


def _describe_binary(data: bytes) -> str | None:
    if data[:4] == b"HCLA":
        return f"an Azure HCL report ({len(data)} bytes, 'HCLA' header)"
    if len(data) == _SNP_REPORT_SIZE:
        version = struct.unpack_from("<I", data)[0]
        return f"a {_SNP_REPORT_SIZE}-byte blob (the size of a raw SEV-SNP report; version field {version})"
    return _der_certificate(data)


def _describe_text(data: bytes, depth: int) -> str:
    stripped = data.strip()
    if depth == 0 and len(stripped) >= 16:
        for name, pattern, decode in (("hex", _HEX, _from_hex), ("base64", _B64, _from_b64)):
            decoded = decode(stripped) if pattern.fullmatch(stripped) else None
            if decoded is not None:
                return f"{name} text of {describe_input(decoded, _depth=1)}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(data)} bytes of unrecognised binary data (starting {data[:8].hex()})"
    return f"{len(data)} bytes of text that is not evidence (starting {text[:24]!r})"


def _describe_json(data: bytes) -> str:
    error = json_error(data)
    if error is not None:
        return f"text that starts like JSON but is not valid JSON ({error})"
    obj = json.loads(data)
    if isinstance(obj, dict):
        keys = [str(k)[:40] for k in list(obj)[:_MAX_KEYS_SHOWN]]
        more = ", …" if len(obj) > _MAX_KEYS_SHOWN else ""
        return f"a JSON object with keys {', '.join(keys) or '(none)'}{more}"
    return f"a JSON {type(obj).__name__}"


def _der_certificate(data: bytes) -> str | None:
    if data[:1] != b"\x30" or len(data) > 64 * 1024:
        return None
    from starlock.attestation.trust import load_certificates, subject_cn

    try:
        cert = load_certificates(data, max_certs=1)[0]
    except AttestationError:
        return None
    return f"a DER certificate (CN={subject_cn(cert) or '?'})"


def _from_hex(text: bytes) -> bytes | None:
    try:
        return bytes.fromhex(text.decode())
    except ValueError:
        return None


def _from_b64(text: bytes) -> bytes | None:
    import base64
    import binascii

    joined = b"".join(text.split())
    try:
        alt = b"-_" if b"-" in joined or b"_" in joined else None
        return base64.b64decode(joined + b"=" * (-len(joined) % 4), altchars=alt, validate=True)
    except (binascii.Error, ValueError):
        return None
