"""A native decoder for the document's large base64 fields (the ``[fast]`` extra: pybase64).

Base64 is most of the cost of parsing a document: the event log and the instance info are tens
of KiB, and the standard decoder reads them a character at a time. With ``pybase64`` installed
they decode about thirty times faster; without it the standard library does the same work. The
native decoder only ever answers where the standard path gives the same bytes: whatever it
refuses (no padding, the URL alphabet, a stray character...) goes to the standard path, which
accepts or refuses it exactly as without the extra (tests compare both paths).

orjson was measured too and left out: it reads integers beyond 64 bits as floats, so a document
would not always parse to the same values as with the standard ``json``.
"""

from __future__ import annotations

import binascii

try:
    import pybase64 as _pybase64
except ImportError:  # pragma: no cover - the [fast] extra is not installed
    _pybase64 = None  # type: ignore[assignment]

__all__ = ["ACTIVE", "LARGE_BASE64", "b64decode_large"]

#: Which native decoders are in use (reported by the benchmark).
ACTIVE: tuple[str, ...] = ("pybase64",) if _pybase64 is not None else ()
#: Below this many characters the standard decoder is as fast (the native call costs more).
LARGE_BASE64 = 1024


def b64decode_large(value: str) -> bytes | None:
    """Strict standard base64 (alphabet ``+/``, padded) of a long string, or None to decide elsewhere."""
    if _pybase64 is None or len(value) < LARGE_BASE64 or len(value) % 4:
        return None
    try:
        decoded: bytes = _pybase64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    return decoded
