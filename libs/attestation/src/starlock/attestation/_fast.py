"""Native decoders for the document's JSON and its large base64 fields (the ``[fast]`` extra).

Base64 is most of the cost of parsing a document: the event log and the instance info are tens
of KiB, and the standard decoder reads them a character at a time. With ``pybase64`` installed
they decode about thirty times faster; without it the standard library does the same work. The
native decoder only ever answers where the standard path gives the same bytes: whatever it
refuses (no padding, the URL alphabet, a stray character...) goes to the standard path, which
accepts or refuses it exactly as without the extra (tests compare both paths).

With ``msgspec`` installed, a whole vTPM document is read in one pass into typed structures
(:func:`decode_document`): msgspec parses the JSON (about 2.5 times faster than ``json.loads``)
and decodes the small base64 fields (AK, quotes, signatures, the 72 PCR values) itself, with no
intermediate strings. It answers only where the general parser would read the same document:

* the structures name every key the general parser reads and forbid any other, so msgspec
  skips nothing unchecked (it validates the UTF-8 and the numbers of everything it decodes);
* integers of any size stay exact, up to the same 4300-digit limit as ``int()``; floats are
  correctly rounded; of duplicate keys the last one counts, as with ``json.loads``;
* its base64 accepts a subset of what :func:`starlock.attestation.document._b64` accepts
  (padded standard alphabet), with the same bytes (the tests check that on random strings);
* it refuses lone surrogates, ``NaN``, a byte-order mark, numbers beyond a float's range, an
  unknown key, a field of another JSON type, base64 it does not read: then the general parser
  decides, with the standard library, as without the extra.

The large fields stay strings and go through :func:`b64decode_large`. Generic JSON fields (the
TEE tree, the GCE instance info) are bounded by the document parser itself.

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

__all__ = ["ACTIVE", "LARGE_BASE64", "MISSING", "UNDECIDED", "b64decode_large", "decode_document"]

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
    """:func:`decode_document` leaves the document to the general parser (not ``None``, a JSON value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDECIDED"


UNDECIDED: Any = _Undecided()

if _msgspec is not None:
    _UNSET: Any = _msgspec.UNSET

    class TypedPcrs(_msgspec.Struct, forbid_unknown_fields=True, gc=False):  # gc: no cycles
        """``pcrs`` of a quote: the hash as given (name or number), the values decoded."""

        hash: Any = _UNSET
        pcrs: dict[str, bytes] | None = _UNSET

    class TypedQuote(_msgspec.Struct, forbid_unknown_fields=True, gc=False):  # gc: no cycles
        quote: bytes | None = _UNSET
        raw_sig: bytes | None = _UNSET
        rawSig: bytes | None = _UNSET
        pcrs: TypedPcrs | None = _UNSET

    class TypedAttestation(_msgspec.Struct, forbid_unknown_fields=True, gc=False):  # gc: no cycles
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

    class TypedDocument(_msgspec.Struct, forbid_unknown_fields=True, gc=False):  # gc: no cycles
        Attestation: TypedAttestation
        InstanceInfo: str | None = _UNSET
        UserData: bytes | None = _UNSET

    _decode_document = _msgspec.json.Decoder(TypedDocument).decode
    #: A key a document did not have (a typed field's default).
    MISSING: Any = _UNSET
    _REFUSED: tuple[type[BaseException], ...] = (_msgspec.DecodeError, RecursionError)
else:  # pragma: no cover - the [fast] extra is not installed
    _decode_document = None
    MISSING = object()
    _REFUSED = ()


def decode_document(raw: bytes) -> Any:
    """``raw`` as a :class:`TypedDocument`, or :data:`UNDECIDED` (the general parser decides).

    UNDECIDED for anything msgspec refuses: invalid JSON, an unknown key, a field of another JSON
    type, base64 it does not read, lone surrogates.
    """
    if _decode_document is None:
        return UNDECIDED
    try:
        return _decode_document(raw)
    except _REFUSED:  # ValidationError (a field's type, base64) is a DecodeError
        return UNDECIDED
