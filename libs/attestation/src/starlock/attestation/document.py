"""The vTPM attestation document that every TPM-based variant sends.

Wire form (reference: spec-attestation §4.3)::

    {"Attestation": <go-tpm-tools attest.Attestation>, "InstanceInfo": b64, "UserData": b64}

``Attestation`` appears in two JSON shapes, and both are read:

* **Go encoding/json** (Constellation at HEAD): snake_case keys from the protobuf-go json tags
  (``ak_pub``, ``raw_sig``, ``event_log``...), numeric hash ids, the TEE oneof as
  ``"TeeAttestation": {"SevSnpAttestation": {...}}``.
* **protojson** (Constellation between 2023-06-21 and 2023-06-22, e.g. the AWS vector):
  camelCase keys (``akPub``, ``rawSig``, ``eventLog``, ``sevSnpAttestation``), hash names
  (``"SHA256"``), 64-bit integers as strings.

:meth:`AttestationDocument.to_json` writes the Go encoding/json form byte for byte as Go does
(struct field order, ``omitempty``, map keys sorted as strings, ``null`` for nil slices).

Parsing is bounded: the document size, the number of quotes, the PCR indices and every base64
field are checked, and every problem raises :class:`MalformedEvidence`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from starlock.attestation._fast import MISSING, UNDECIDED, b64decode_large, decode_document
from starlock.attestation.errors import MalformedEvidence

__all__ = [
    "HASH_ALG_IDS",
    "HASH_ALG_NAMES",
    "MAX_DOCUMENT_SIZE",
    "Attestation",
    "AttestationDocument",
    "GceInstanceInfo",
    "PCRs",
    "Quote",
]

#: Upper bound for a serialised document; real ones are 5–60 KiB (the event log dominates).
MAX_DOCUMENT_SIZE = 2 * 1024 * 1024
MAX_QUOTES = 8
MAX_PCR_INDEX = 31
MAX_INTERMEDIATES = 8

#: TPM_ALG_ID of the hash algorithms a PCR bank can use.
HASH_ALG_IDS: Mapping[str, int] = {"SHA1": 0x0004, "SHA256": 0x000B, "SHA384": 0x000C, "SHA512": 0x000D}
HASH_ALG_NAMES: Mapping[int, str] = {v: k for k, v in HASH_ALG_IDS.items()}
_DIGEST_SIZES: Mapping[int, int] = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64}


@attrs.frozen
class PCRs:
    """PCR values of one bank: ``hash`` is the TPM_ALG_ID, ``pcrs`` index → digest."""

    hash: int
    pcrs: Mapping[int, bytes]

    @property
    def hash_name(self) -> str:
        return HASH_ALG_NAMES.get(self.hash, f"0x{self.hash:04x}")


class _QuoteDerived:
    """A slot for the parsed TPMS_ATTEST of a Quote's ``quote`` bytes, computed once (not an attrs
    field; see ``starlock.attestation.tpm.quote.attest_of``)."""

    __slots__ = ("_attest",)


@attrs.frozen
class Quote(_QuoteDerived):
    """One TPM2_Quote: ``quote`` is TPMS_ATTEST, ``raw_sig`` is TPMT_SIGNATURE."""

    quote: bytes
    raw_sig: bytes
    pcrs: PCRs


@attrs.frozen
class GceInstanceInfo:
    zone: str = ""
    project_id: str = ""
    project_number: int = 0
    instance_name: str = ""
    instance_id: int = 0


@attrs.frozen
class Attestation:
    """go-tpm-tools ``attest.Attestation``.

    ``tee_attestation`` keeps the TEE oneof as parsed JSON (``{"SevSnpAttestation": {...}}``),
    untouched: no Constellation validator reads it, but it is carried for audit and re-encoding.
    """

    ak_pub: bytes
    quotes: tuple[Quote, ...]
    event_log: bytes = b""
    instance_info: GceInstanceInfo | None = None
    canonical_event_log: bytes = b""
    ak_cert: bytes = b""
    intermediate_certs: tuple[bytes, ...] = ()
    tee_attestation: Mapping[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        # One quote per PCR bank. With two quotes over one bank, "the" quote of that bank is
        # ambiguous: a validator could verify one and read the PCR values of the other.
        seen: set[int] = set()
        for quote in self.quotes:
            if quote.pcrs.hash in seen:
                raise MalformedEvidence(f"field quotes: more than one quote over the {quote.pcrs.hash_name} bank")
            seen.add(quote.pcrs.hash)

    def quote_for(self, hash_alg: int) -> Quote | None:
        """The quote over the given bank, or None."""
        for quote in self.quotes:
            if quote.pcrs.hash == hash_alg:
                return quote
        return None


@attrs.frozen
class AttestationDocument:
    """Constellation's ``vtpm.AttestationDocument``."""

    attestation: Attestation
    instance_info: bytes
    user_data: bytes

    @classmethod
    def from_json(cls, raw: bytes | str) -> AttestationDocument:
        if isinstance(raw, str):
            raw = raw.encode()
        if len(raw) > MAX_DOCUMENT_SIZE:
            raise MalformedEvidence(
                f"attestation document is {len(raw)} bytes, more than the limit {MAX_DOCUMENT_SIZE}"
            )
        # The [fast] extra's one-pass decode, when installed and it decides (bytes only: json.loads
        # refuses a memoryview, and so must this).
        typed = decode_document(raw) if isinstance(raw, bytes | bytearray) else UNDECIDED
        if typed is not UNDECIDED:
            try:
                return _from_typed(typed)
            except MalformedEvidence:
                pass  # the general parser below decides, and names what is wrong
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise MalformedEvidence(f"attestation document is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise MalformedEvidence("attestation document must be a JSON object")
        att = obj.get("Attestation")
        if not isinstance(att, dict):
            raise MalformedEvidence("attestation document: field Attestation missing or not an object")
        return cls(
            attestation=_parse_attestation(att),
            instance_info=_b64_field(obj, "InstanceInfo"),
            user_data=_b64_field(obj, "UserData"),
        )

    def to_json(self) -> bytes:
        """Go ``json.Marshal`` of the document (HEAD form), byte-compatible."""
        doc = {
            "Attestation": _attestation_to_go(self.attestation),
            "InstanceInfo": _b64_or_null(self.instance_info),
            "UserData": _b64_or_null(self.user_data),
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# --- parsing ---------------------------------------------------------------------------


def _pick(obj: Mapping[str, Any], snake: str, camel: str) -> Any:
    if snake in obj:
        return obj[snake]
    return obj.get(camel)


def _b64(value: Any, name: str) -> bytes:
    """Decode a protobuf/Go base64 string: standard or URL alphabet, padding optional."""
    if value is None:
        return b""
    if not isinstance(value, str):
        raise MalformedEvidence(f"field {name}: expected a base64 string, got {type(value).__name__}")
    if len(value) > MAX_DOCUMENT_SIZE:
        raise MalformedEvidence(f"field {name}: longer than the document limit")
    decoded = b64decode_large(value)  # a native decoder for the event log and the like, when installed
    if decoded is not None:
        return decoded
    try:  # fast path: standard alphabet with padding (what Go writes)
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"field {name}: not valid base64") from None


def _b64_field(obj: Mapping[str, Any], key: str) -> bytes:
    return _b64(obj.get(key), key)


def _uint(value: Any, name: str) -> int:
    # protojson writes uint64 as strings, encoding/json as numbers.
    if isinstance(value, bool):
        raise MalformedEvidence(f"field {name}: expected an unsigned integer, got a boolean")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < 2**64:
        raise MalformedEvidence(f"field {name}: expected an unsigned 64-bit integer, got {value!r:.40}")
    return value


def _str(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 1024:
        raise MalformedEvidence(f"field {name}: expected a string of at most 1024 characters")
    _require_text(value, name)
    return value


def _require_text(value: str, name: str) -> None:
    """JSON can escape a lone surrogate (``\\ud800``), which is not Unicode text: refuse it here,
    or re-encoding the document later would fail."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedEvidence(f"field {name}: not valid Unicode text (a lone surrogate)") from None


#: How deep the TEE tree may nest (it is carried as parsed JSON).
_MAX_TREE_DEPTH = 32


def _check_tree(value: Any, name: str, *, text_checked: bool) -> None:
    """The TEE tree nests at most :data:`_MAX_TREE_DEPTH` deep and holds only Unicode text.

    One quick walk; only when it finds a problem does :func:`_require_text_tree` walk again to
    name where (``text_checked``: the JSON decoder already refused lone surrogates).
    """
    if not _tree_ok(value, 0, not text_checked):
        _require_text_tree(value, name)  # raises, naming the field
        raise MalformedEvidence(f"field {name}: not Unicode text or nested too deeply")  # pragma: no cover


_CONTAINERS = (dict, list)  # a tuple: isinstance with it is cheaper than with ``dict | list``


def _tree_ok(value: Any, depth: int, check_text: bool) -> bool:
    """``value`` at ``depth`` and everything below it is within the bounds of :func:`_require_text_tree`.

    Recurses into containers only: a scalar child is checked in its parent's loop.
    """
    if depth > _MAX_TREE_DEPTH:
        return False
    if isinstance(value, str):
        return not check_text or _is_text(value)
    if isinstance(value, dict):
        if check_text and not all(_is_text(str(key)) for key in value):
            return False
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return True
    if items and depth == _MAX_TREE_DEPTH:
        return False  # its children would be nested one level too deep
    depth += 1
    ok = True
    for item in items:
        if isinstance(item, _CONTAINERS):
            ok = _tree_ok(item, depth, check_text)
        elif check_text and isinstance(item, str):
            ok = _is_text(item)
        if not ok:
            break
    return ok


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _require_text_tree(value: Any, name: str, depth: int = 0) -> None:
    if depth > _MAX_TREE_DEPTH:
        raise MalformedEvidence(f"field {name}: nested too deeply")
    if isinstance(value, str):
        _require_text(value, name)
    elif isinstance(value, dict):
        for key, item in value.items():
            _require_text(str(key), name)
            _require_text_tree(item, f"{name}.{key}", depth + 1)
    elif isinstance(value, list):
        for item in value:
            _require_text_tree(item, name, depth + 1)


def _parse_hash(value: Any) -> int:
    if isinstance(value, str):
        if value in HASH_ALG_IDS:
            return HASH_ALG_IDS[value]
        raise MalformedEvidence(f"field pcrs.hash: unknown hash algorithm {value!r:.40}")
    alg = _uint(value, "pcrs.hash")
    if alg not in _DIGEST_SIZES:
        raise MalformedEvidence(f"field pcrs.hash: unknown hash algorithm id 0x{alg:04x}")
    return alg


#: The PCR map keys the fast path accepts ("0".."31" and the zero-padded "00".."09"); anything else
#: takes the general path, which applies the full rule (and names the offending key).
_PCR_KEYS: Mapping[str, int] = {**{str(i): i for i in range(MAX_PCR_INDEX + 1)}, **{f"{i:02d}": i for i in range(10)}}


def _parse_pcrs(obj: Any, where: str) -> PCRs:
    if not isinstance(obj, dict):
        raise MalformedEvidence(f"field {where}.pcrs: missing or not an object")
    alg = _parse_hash(obj.get("hash"))
    values = obj.get("pcrs") or {}
    if not isinstance(values, dict):
        raise MalformedEvidence(f"field {where}.pcrs.pcrs: not an object")
    if len(values) > MAX_PCR_INDEX + 1:
        raise MalformedEvidence(f"field {where}.pcrs.pcrs: {len(values)} entries, at most {MAX_PCR_INDEX + 1}")
    # Fast path (what Go writes): every key a plain index named once, every value standard padded
    # base64 of the bank's digest size. Any deviation, valid or not, is handled by the general
    # per-entry path, so results and error messages are the same.
    order = _pcr_order(tuple(values))
    a2b_base64 = binascii.a2b_base64
    try:
        digests = [a2b_base64(value, strict_mode=True) for value in values.values()]
    except (TypeError, ValueError):  # binascii.Error is a ValueError
        order = None
    if order is None or (digests and set(map(len, digests)) != {_DIGEST_SIZES[alg]}):
        return PCRs(hash=alg, pcrs=_parse_pcr_values(values, where, alg))
    return PCRs(hash=alg, pcrs=_in_index_order(order, digests))


def _parse_pcr_values(values: Mapping[Any, Any], where: str, alg: int) -> dict[int, bytes]:
    """The general path: one entry at a time, any base64 form :func:`_b64` reads."""
    pcrs: dict[int, bytes] = {}
    for key, val in values.items():
        index = _pcr_index(key)
        if index is None:
            raise MalformedEvidence(f"field {where}.pcrs.pcrs: PCR index {key!r:.12} out of range 0..{MAX_PCR_INDEX}")
        digest = _b64(val, f"{where}.pcrs.pcrs[{key}]")
        if len(digest) != _DIGEST_SIZES[alg]:
            raise MalformedEvidence(
                f"field {where}.pcrs.pcrs[{key}]: {len(digest)} bytes, "
                f"expected {_DIGEST_SIZES[alg]} for {HASH_ALG_NAMES[alg]}"
            )
        pcrs[index] = digest
    return dict(sorted(pcrs.items()))


def _pcr_index(key: Any) -> int | None:
    if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 2):
        return None
    try:  # str.isdigit() admits digits int() refuses (superscripts): malformed keys too
        index = int(key)
    except ValueError:
        return None
    return index if index <= MAX_PCR_INDEX else None


def _parse_quote(obj: Any, index: int) -> Quote:
    where = f"quotes[{index}]"
    if not isinstance(obj, dict):
        raise MalformedEvidence(f"field {where}: not an object")
    return Quote(
        quote=_b64(obj.get("quote"), f"{where}.quote"),
        raw_sig=_b64(_pick(obj, "raw_sig", "rawSig"), f"{where}.raw_sig"),
        pcrs=_parse_pcrs(obj.get("pcrs"), where),
    )


def _parse_instance_info(obj: Any) -> GceInstanceInfo | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise MalformedEvidence("field instance_info: not an object")
    return GceInstanceInfo(
        zone=_str(obj.get("zone"), "instance_info.zone"),
        project_id=_str(_pick(obj, "project_id", "projectId"), "instance_info.project_id"),
        project_number=_uint(_pick(obj, "project_number", "projectNumber") or 0, "instance_info.project_number"),
        instance_name=_str(_pick(obj, "instance_name", "instanceName"), "instance_info.instance_name"),
        instance_id=_uint(_pick(obj, "instance_id", "instanceId") or 0, "instance_info.instance_id"),
    )


def _parse_tee(att: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return _tee(lambda key: att.get(key, MISSING), text_checked=False)


def _tee(field: Callable[[str], Any], *, text_checked: bool) -> Mapping[str, Any] | None:
    """The TEE oneof, from ``field(key)`` (:data:`MISSING` for an absent key), in either shape."""
    tee = field("TeeAttestation")
    if tee is not MISSING and tee is not None:
        if not isinstance(tee, dict):
            raise MalformedEvidence("field TeeAttestation: not an object")
        _check_tree(tee, "TeeAttestation", text_checked=text_checked)
        return tee
    # protojson flattens the oneof into the message.
    for keys, go_name in _TEE_ONEOF:
        for key in keys:
            value = field(key)
            if value is not MISSING:
                if not isinstance(value, dict):
                    raise MalformedEvidence(f"field {key}: not an object")
                _check_tree(value, key, text_checked=text_checked)
                return {go_name: value}
    return None


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


#: The TEE oneof's protojson keys (camelCase, then snake_case) and its Go field name.
_TEE_ONEOF = tuple(
    ((camel, _snake(camel)), go_name)
    for camel, go_name in (("sevSnpAttestation", "SevSnpAttestation"), ("tdxAttestation", "TdxAttestation"))
)


def _parse_attestation(att: Mapping[str, Any]) -> Attestation:
    quotes_raw = att.get("quotes") or []
    if not isinstance(quotes_raw, list):
        raise MalformedEvidence("field quotes: not a list")
    if len(quotes_raw) > MAX_QUOTES:
        raise MalformedEvidence(f"field quotes: {len(quotes_raw)} quotes, at most {MAX_QUOTES}")
    inter_raw = _pick(att, "intermediate_certs", "intermediateCerts") or []
    if not isinstance(inter_raw, list) or len(inter_raw) > MAX_INTERMEDIATES:
        raise MalformedEvidence(f"field intermediate_certs: not a list of at most {MAX_INTERMEDIATES}")
    return Attestation(
        ak_pub=_b64(_pick(att, "ak_pub", "akPub"), "ak_pub"),
        quotes=tuple(_parse_quote(q, i) for i, q in enumerate(quotes_raw)),
        event_log=_b64(_pick(att, "event_log", "eventLog"), "event_log"),
        instance_info=_parse_instance_info(_pick(att, "instance_info", "instanceInfo")),
        canonical_event_log=_b64(_pick(att, "canonical_event_log", "canonicalEventLog"), "canonical_event_log"),
        ak_cert=_b64(_pick(att, "ak_cert", "akCert"), "ak_cert"),
        intermediate_certs=tuple(_b64(c, f"intermediate_certs[{i}]") for i, c in enumerate(inter_raw)),
        tee_attestation=_parse_tee(att),
    )


# --- writing (Go encoding/json of the protobuf-go structs) -------------------------------


def _b64_or_null(data: bytes) -> str | None:
    return base64.b64encode(data).decode() if data else None


def _attestation_to_go(att: Attestation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if att.ak_pub:
        out["ak_pub"] = base64.b64encode(att.ak_pub).decode()
    if att.quotes:
        out["quotes"] = [_quote_to_go(q) for q in att.quotes]
    if att.event_log:
        out["event_log"] = base64.b64encode(att.event_log).decode()
    if att.instance_info is not None:
        info = att.instance_info
        fields: dict[str, Any] = {
            "zone": info.zone,
            "project_id": info.project_id,
            "project_number": info.project_number,
            "instance_name": info.instance_name,
            "instance_id": info.instance_id,
        }
        out["instance_info"] = {k: v for k, v in fields.items() if v}
    if att.canonical_event_log:
        out["canonical_event_log"] = base64.b64encode(att.canonical_event_log).decode()
    if att.ak_cert:
        out["ak_cert"] = base64.b64encode(att.ak_cert).decode()
    if att.intermediate_certs:
        out["intermediate_certs"] = [base64.b64encode(c).decode() for c in att.intermediate_certs]
    # The oneof wrapper has no json tag and no omitempty: Go writes null when it is unset.
    out["TeeAttestation"] = dict(att.tee_attestation) if att.tee_attestation is not None else None
    return out


def _quote_to_go(quote: Quote) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if quote.quote:
        out["quote"] = base64.b64encode(quote.quote).decode()
    if quote.raw_sig:
        out["raw_sig"] = base64.b64encode(quote.raw_sig).decode()
    pcrs: dict[str, Any] = {}
    if quote.pcrs.hash:
        pcrs["hash"] = quote.pcrs.hash
    if quote.pcrs.pcrs:
        # encoding/json sorts map keys by their string form: "0" < "1" < "10" < "2".
        pcrs["pcrs"] = {
            str(i): base64.b64encode(v).decode() for i, v in sorted(quote.pcrs.pcrs.items(), key=lambda kv: str(kv[0]))
        }
    out["pcrs"] = pcrs
    return out


# --- the [fast] extra's typed decode (see starlock.attestation._fast) -------------------------


def _from_typed(doc: Any) -> AttestationDocument:
    """The document from a ``_fast.TypedDocument``: the general parser's steps on decoded fields.

    Raises MalformedEvidence for anything the general parser would refuse; the caller then runs
    the general parser, whose message names the problem. msgspec refused lone surrogates, so
    the strings need no Unicode check.
    """
    att = doc.Attestation
    quotes_raw = att.quotes or []
    inter_raw = _typed_pick(att.intermediate_certs, att.intermediateCerts) or []
    if len(quotes_raw) > MAX_QUOTES or len(inter_raw) > MAX_INTERMEDIATES:
        raise MalformedEvidence("too many quotes or intermediate certificates")
    info = _typed_pick(att.instance_info, att.instanceInfo)
    if info is not None and not _tree_ok(info, 0, False):
        # Generic JSON whose unknown keys the general parser ignores, but json.loads may refuse
        # (its nesting limit is the interpreter's, msgspec's another): let it decide.
        raise MalformedEvidence("instance info nested deeply")
    # Positional, in field order: keywords cost more on this hot path.
    return AttestationDocument(
        Attestation(
            _typed_pick(att.ak_pub, att.akPub) or b"",  # ak_pub
            tuple(map(_typed_quote, quotes_raw)),  # quotes
            _b64(_typed_pick(att.event_log, att.eventLog), "event_log"),
            _parse_instance_info(info),
            _b64(_typed_pick(att.canonical_event_log, att.canonicalEventLog), "canonical_event_log"),
            _b64(_typed_pick(att.ak_cert, att.akCert), "ak_cert"),
            tuple(_b64(c, "intermediate_certs") for c in inter_raw),
            # tee_attestation: the typed fields are named as the JSON keys
            _tee(functools.partial(getattr, att), text_checked=True),
        ),
        _b64(None if doc.InstanceInfo is MISSING else doc.InstanceInfo, "InstanceInfo"),
        (None if doc.UserData is MISSING else doc.UserData) or b"",  # user_data
    )


def _typed_pick(snake: Any, camel: Any) -> Any:
    """:func:`_pick` on typed fields: the snake_case key when present (even null), else camelCase."""
    if snake is not MISSING:
        return snake
    return None if camel is MISSING else camel


def _typed_quote(quote: Any) -> Quote:
    pcrs = quote.pcrs
    if pcrs is None or pcrs is MISSING:
        raise MalformedEvidence("a quote without pcrs")
    values = pcrs.pcrs
    alg = _parse_hash(None if pcrs.hash is MISSING else pcrs.hash)
    if values is None or values is MISSING:
        values = {}
    if len(values) > MAX_PCR_INDEX + 1:
        raise MalformedEvidence("too many PCR values")
    if values and set(map(len, values.values())) != {_DIGEST_SIZES[alg]}:
        raise MalformedEvidence("a PCR value of the wrong size")
    order = _pcr_order(tuple(values))
    if order is None:
        raise MalformedEvidence("a PCR key the fast path does not read, or two keys naming one PCR")
    return Quote(  # quote, raw_sig, pcrs (hash, pcrs)
        (None if quote.quote is MISSING else quote.quote) or b"",
        _typed_pick(quote.raw_sig, quote.rawSig) or b"",
        PCRs(alg, _in_index_order(order, list(values.values()))),
    )


@functools.lru_cache(maxsize=32)
def _pcr_order(keys: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """For PCR map keys in this order: the PCR indices ascending and the position of each one's
    value, as _parse_pcrs orders them. None when a key is not a plain index or two keys name one
    PCR ("1", "01"): the general parser decides those.

    Documents of one kind list their keys in one order, so the sort is done once per order.
    """
    try:
        indices = [_PCR_KEYS[key] for key in keys]
    except (KeyError, TypeError):
        return None
    if len(set(indices)) != len(indices):
        return None
    positions = sorted(range(len(indices)), key=indices.__getitem__)
    return tuple(indices[i] for i in positions), tuple(positions)


def _in_index_order(order: tuple[tuple[int, ...], tuple[int, ...]], digests: list[bytes]) -> dict[int, bytes]:
    """The PCR map, index → digest ascending, from the values in key order (see :func:`_pcr_order`)."""
    indices, positions = order
    return dict(zip(indices, map(digests.__getitem__, positions), strict=True))
