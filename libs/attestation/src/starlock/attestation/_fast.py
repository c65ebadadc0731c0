"""Native decoders for the document's JSON and its large base64 fields (the ``[fast]`` extra).

Base64 is most of the cost of parsing a document: the event log and the instance info are tens
of KiB, and the standard decoder reads them a character at a time. With ``pybase64`` installed
they decode about thirty times faster; without it the standard library does the same work. The
native decoder only ever answers where the standard path gives the same bytes: whatever it
refuses (no padding, the URL alphabet, a stray character...) goes to the standard path, which
accepts or refuses it exactly as without the extra (tests compare both paths).

The JSON text itself is read by ``msgspec`` (about 2.5 times faster than ``json.loads`` on a
46 KB document) when it is installed. It answers only where it gives the value ``json.loads``
gives: integers of any size stay exact integers, floats are correctly rounded, duplicate keys keep
the last value. Everything it refuses goes to ``json.loads``, which accepts or refuses it as
without the extra: ``NaN`` and ``Infinity``, numbers beyond a float's range (``json`` reads them
as infinities), a byte-order mark or UTF-16 text, nesting too deep for either. It also refuses lone
surrogates (``"\\ud800"`` or their UTF-8 bytes), so a text it accepted holds only valid Unicode
(:data:`VALID_UNICODE`). The tests compare both decoders on edge cases and random JSON.

A whole vTPM document can also be read in one pass into typed structures
(:func:`decode_document`): msgspec then decodes the small base64 fields (AK, quotes, signatures,
the 72 PCR values) itself, with no intermediate strings. Its base64 decoder accepts a subset of
what :func:`starlock.attestation.document._b64` accepts (padded standard alphabet), with the same
bytes; the tests check that on random mutations. The large fields stay strings and go through
:func:`b64decode_large`. The structures name every key the general parser reads, so that no
field it would parse is skipped here; what they do not describe makes the decode fail, and the
general parser decides.

orjson was measured too and left out: it reads integers beyond 64 bits as floats, so a document
would not always parse to the same values as with the standard ``json``.
"""

from __future__ import annotations

import binascii
from typing import Any

try:
    import pybase64 as _pybase64
except ImportError:  # pragma: no cover - the [fast] extra is not installed
    _pybase64 = None  # type: ignore[assignment]
try:
    import msgspec as _msgspec
except ImportError:  # pragma: no cover - the [fast] extra is not installed
    _msgspec = None  # type: ignore[assignment]

__all__ = [
    "ACTIVE",
    "LARGE_BASE64",
    "UNDECIDED",
    "VALID_UNICODE",
    "b64decode_large",
    "decode_document",
    "json_loads",
]

#: Which native decoders are in use (reported by the benchmark).
ACTIVE: tuple[str, ...] = tuple(
    name for name, module in (("pybase64", _pybase64), ("msgspec", _msgspec)) if module is not None
)
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


class _Undecided:
    """:func:`json_loads` leaves the text to ``json.loads`` (``None`` is a JSON value, so not that)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDECIDED"


UNDECIDED: Any = _Undecided()
#: Whatever :func:`json_loads` returns (other than :data:`UNDECIDED`) has no lone surrogate in any
#: string or key: msgspec refuses them, escaped or as UTF-8 bytes.
VALID_UNICODE = True

if _msgspec is not None:
    _decode = _msgspec.json.Decoder().decode
    _REFUSED: tuple[type[BaseException], ...] = (_msgspec.DecodeError, RecursionError)
else:  # pragma: no cover - the [fast] extra is not installed
    _decode = None
    _REFUSED = ()


def json_loads(raw: bytes) -> Any:
    """The value of the JSON text ``raw``, as ``json.loads`` reads it, or :data:`UNDECIDED`.

    UNDECIDED when the extra is not installed or msgspec refuses the text: then ``json.loads``
    decides (and gives the error message).
    """
    if _decode is None:
        return UNDECIDED
    try:
        return _decode(raw)
    except _REFUSED:  # msgspec.ValidationError (numbers out of range) is a DecodeError
        return UNDECIDED


if _msgspec is not None:
    _UNSET: Any = _msgspec.UNSET

    class TypedPcrs(_msgspec.Struct, gc=False):  # no cycles: not tracked by the GC
        """``pcrs`` of a quote: the hash as given (name or number), the values decoded."""

        hash: Any = _UNSET
        pcrs: dict[str, bytes] | None = _UNSET

    class TypedQuote(_msgspec.Struct, gc=False):  # no cycles: not tracked by the GC
        quote: bytes | None = _UNSET
        raw_sig: bytes | None = _UNSET
        rawSig: bytes | None = _UNSET
        pcrs: TypedPcrs | None = _UNSET

    class TypedAttestation(_msgspec.Struct, gc=False):  # no cycles: not tracked by the GC
        """Every key of go-tpm-tools' Attestation the general parser reads, in both JSON shapes.

        The large base64 fields stay strings (pybase64 decodes them faster); the TEE and instance
        info stay generic JSON for the general parser's checks.
        """

        ak_pub: bytes | None = _UNSET
        akPub: bytes | None = _UNSET
        quotes: list[TypedQuote] | None = _UNSET
        event_log: str | None = _UNSET
        eventLog: str | None = _UNSET
        instance_info: Any = _UNSET
        instanceInfo: Any = _UNSET
        canonical_event_log: str | None = _UNSET
        canonicalEventLog: str | None = _UNSET
        ak_cert: str | None = _UNSET
        akCert: str | None = _UNSET
        intermediate_certs: list[str] | None = _UNSET
        intermediateCerts: list[str] | None = _UNSET
        TeeAttestation: Any = _UNSET
        sevSnpAttestation: Any = _UNSET
        sev_snp_attestation: Any = _UNSET
        tdxAttestation: Any = _UNSET
        tdx_attestation: Any = _UNSET

    class TypedDocument(_msgspec.Struct, gc=False):  # no cycles: not tracked by the GC
        Attestation: TypedAttestation
        InstanceInfo: str | None = _UNSET
        UserData: bytes | None = _UNSET

    _decode_document = _msgspec.json.Decoder(TypedDocument).decode
    #: A key a document did not have (a typed field's default).
    MISSING: Any = _UNSET
else:  # pragma: no cover - the [fast] extra is not installed
    _decode_document = None
    MISSING = object()


def decode_document(raw: bytes) -> Any:
    """``raw`` as a :class:`TypedDocument`, or :data:`UNDECIDED` (the general parser decides).

    UNDECIDED for anything msgspec refuses: invalid JSON, a field of another JSON type, base64 it
    does not read, lone surrogates.
    """
    if _decode_document is None:
        return UNDECIDED
    try:
        return _decode_document(raw)
    except _REFUSED:  # ValidationError (a field's type, base64) is a DecodeError
        return UNDECIDED
