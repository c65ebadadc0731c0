"""Convert go-tpm-tools' binary ``attest.Attestation`` to and from :class:`document.Attestation`.

go-tpm-tools hands out attestations as binary protobuf (``proto.Marshal``); Constellation wraps
them as JSON instead (see :mod:`starlock.attestation.document`). Both forms end up in the same
frozen :class:`~starlock.attestation.document.Attestation`.

Bounds, checked in both directions so that whatever we write we also accept:

* at most :data:`~starlock.attestation.document.MAX_DOCUMENT_SIZE` bytes of input;
* at most ``MAX_QUOTES`` quotes and ``MAX_INTERMEDIATES`` intermediate certificates;
* every quote names a known PCR bank (SHA1, SHA256, SHA384, SHA512), PCR indices are
  0..``MAX_PCR_INDEX`` and every digest has the size of the bank's hash;
* instance-info strings are at most 1024 characters (as in the JSON parser).

Every violation, and every protobuf decoding error, raises
:class:`~starlock.attestation.errors.MalformedEvidence`. Fields that go-tpm-tools added after the
ones declared in ``attest.proto`` are skipped on parse and therefore not re-encoded.

TEE attestation (the ``tee_attestation`` oneof, fields 8 and 9): we do not carry the schemas of
go-sev-guest and go-tdx-guest, so the member's serialized message is kept opaque, as standard
base64 (RFC 4648, padded) under a key that says which member it was and that it is protobuf::

    {"SevSnpAttestationPb": "<base64>"}   # field 8, sevsnp.Attestation
    {"TdxAttestationPb": "<base64>"}      # field 9, tdx.QuoteV4

This is distinct from the JSON form the document parser stores (``{"SevSnpAttestation": {...}}``,
a parsed object); that form cannot be turned back into protobuf here and
:func:`attestation_to_pb` refuses it with :class:`~starlock.attestation.errors.UnsupportedError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import DecodeError

from starlock.attestation import document
from starlock.attestation._proto import attest_pb2, tpm_pb2
from starlock.attestation.document import Attestation, GceInstanceInfo, PCRs, Quote
from starlock.attestation.errors import MalformedEvidence, UnsupportedError

__all__ = ["TEE_SEV_SNP_KEY", "TEE_TDX_KEY", "attestation_from_pb", "attestation_to_pb"]

#: ``tee_attestation`` key for oneof member 8 (``sev_snp_attestation``), value base64 of its bytes.
TEE_SEV_SNP_KEY = "SevSnpAttestationPb"
#: ``tee_attestation`` key for oneof member 9 (``tdx_attestation``), value base64 of its bytes.
TEE_TDX_KEY = "TdxAttestationPb"

_TEE_FIELDS: Mapping[str, str] = {"sev_snp_attestation": TEE_SEV_SNP_KEY, "tdx_attestation": TEE_TDX_KEY}
_TEE_KEYS: Mapping[str, str] = {v: k for k, v in _TEE_FIELDS.items()}

#: Digest size in bytes per TPM_ALG_ID; the tpm.HashAlgo enum values are the TPM_ALG_IDs.
_DIGEST_SIZES: Mapping[int, int] = {
    alg: hashlib.new(name.lower()).digest_size for name, alg in document.HASH_ALG_IDS.items()
}
_MAX_STRING = 1024

# What the protobuf runtime raises on bad input: DecodeError on parse; ValueError/TypeError/
# OverflowError when a value does not fit a field on build; RecursionError for deep nesting.
_PB_ERRORS = (DecodeError, ValueError, TypeError, OverflowError, RecursionError)


def attestation_from_pb(data: bytes) -> Attestation:
    """Parse a binary go-tpm-tools ``attest.Attestation``; raises :class:`MalformedEvidence`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidence(f"attestation protobuf: expected bytes, got {type(data).__name__}")
    if len(data) > document.MAX_DOCUMENT_SIZE:
        raise MalformedEvidence(
            f"attestation protobuf is {len(data)} bytes, more than the limit {document.MAX_DOCUMENT_SIZE}"
        )
    msg = attest_pb2.Attestation()
    try:
        msg.ParseFromString(bytes(data))
    except _PB_ERRORS as exc:
        raise MalformedEvidence(f"attestation protobuf: cannot decode: {exc}") from None

    _check_counts(len(msg.quotes), len(msg.intermediate_certs))
    quotes = tuple(_quote_from_pb(q, i) for i, q in enumerate(msg.quotes))
    info = _instance_info_from_pb(msg.instance_info) if msg.HasField("instance_info") else None
    member = msg.WhichOneof("tee_attestation")
    tee: Mapping[str, Any] | None = None
    if member is not None:
        raw: bytes = getattr(msg, member)
        tee = {_TEE_FIELDS[member]: base64.b64encode(raw).decode("ascii")}
    return Attestation(
        ak_pub=msg.ak_pub,
        quotes=quotes,
        event_log=msg.event_log,
        instance_info=info,
        canonical_event_log=msg.canonical_event_log,
        ak_cert=msg.ak_cert,
        intermediate_certs=tuple(msg.intermediate_certs),
        tee_attestation=tee,
    )


def attestation_to_pb(att: Attestation) -> bytes:
    """Serialize to binary ``attest.Attestation`` (map entries sorted, so the output is stable).

    Raises :class:`MalformedEvidence` when ``att`` breaks a bound that :func:`attestation_from_pb`
    enforces, and :class:`UnsupportedError` for a TEE attestation held in JSON form.
    """
    _check_counts(len(att.quotes), len(att.intermediate_certs))
    msg = attest_pb2.Attestation()
    try:
        msg.ak_pub = att.ak_pub
        for index, quote in enumerate(att.quotes):
            _check_bank(quote.pcrs.hash, quote.pcrs.pcrs, f"quotes[{index}]")
            msg.quotes.append(
                tpm_pb2.Quote(
                    quote=quote.quote,
                    raw_sig=quote.raw_sig,
                    pcrs=tpm_pb2.PCRs(hash=tpm_pb2.HashAlgo.Name(quote.pcrs.hash), pcrs=dict(quote.pcrs.pcrs)),
                )
            )
        msg.event_log = att.event_log
        if att.instance_info is not None:
            info = att.instance_info
            for name in ("zone", "project_id", "instance_name"):
                _check_string(getattr(info, name), f"instance_info.{name}")
            msg.instance_info.CopyFrom(
                attest_pb2.GCEInstanceInfo(
                    zone=info.zone,
                    project_id=info.project_id,
                    project_number=info.project_number,
                    instance_name=info.instance_name,
                    instance_id=info.instance_id,
                )
            )
        msg.canonical_event_log = att.canonical_event_log
        msg.ak_cert = att.ak_cert
        msg.intermediate_certs.extend(att.intermediate_certs)
        if att.tee_attestation is not None:
            member, raw = _tee_to_pb(att.tee_attestation)
            setattr(msg, member, raw)
        out = msg.SerializeToString(deterministic=True)
    except _PB_ERRORS as exc:
        raise MalformedEvidence(f"attestation cannot be encoded as protobuf: {exc}") from None
    if len(out) > document.MAX_DOCUMENT_SIZE:
        raise MalformedEvidence(f"encoded attestation is {len(out)} bytes, more than {document.MAX_DOCUMENT_SIZE}")
    return out


# --- helpers --------------------------------------------------------------------------------


def _check_counts(quotes: int, intermediates: int) -> None:
    if quotes > document.MAX_QUOTES:
        raise MalformedEvidence(f"field quotes: {quotes} quotes, at most {document.MAX_QUOTES}")
    if intermediates > document.MAX_INTERMEDIATES:
        raise MalformedEvidence(
            f"field intermediate_certs: {intermediates} certificates, at most {document.MAX_INTERMEDIATES}"
        )


def _check_bank(alg: int, pcrs: Mapping[int, bytes], where: str) -> None:
    size = _DIGEST_SIZES.get(alg)
    if size is None:
        raise MalformedEvidence(f"field {where}.pcrs.hash: unknown or missing hash algorithm id {alg}")
    for index, digest in pcrs.items():
        if not 0 <= index <= document.MAX_PCR_INDEX:
            raise MalformedEvidence(
                f"field {where}.pcrs.pcrs: PCR index {index} out of range 0..{document.MAX_PCR_INDEX}"
            )
        if len(digest) != size:
            raise MalformedEvidence(
                f"field {where}.pcrs.pcrs[{index}]: {len(digest)} bytes, expected {size} for "
                f"{document.HASH_ALG_NAMES[alg]}"
            )


def _check_string(value: str, where: str) -> None:
    if len(value) > _MAX_STRING:
        raise MalformedEvidence(f"field {where}: {len(value)} characters, at most {_MAX_STRING}")


def _quote_from_pb(quote: tpm_pb2.Quote, index: int) -> Quote:
    alg = int(quote.pcrs.hash)
    values = dict(quote.pcrs.pcrs)
    _check_bank(alg, values, f"quotes[{index}]")
    return Quote(quote=quote.quote, raw_sig=quote.raw_sig, pcrs=PCRs(hash=alg, pcrs=dict(sorted(values.items()))))


def _instance_info_from_pb(info: attest_pb2.GCEInstanceInfo) -> GceInstanceInfo:
    for name in ("zone", "project_id", "instance_name"):
        _check_string(getattr(info, name), f"instance_info.{name}")
    return GceInstanceInfo(
        zone=info.zone,
        project_id=info.project_id,
        project_number=info.project_number,
        instance_name=info.instance_name,
        instance_id=info.instance_id,
    )


def _tee_to_pb(tee: Mapping[str, Any]) -> tuple[str, bytes]:
    if len(tee) != 1:
        raise MalformedEvidence(f"field tee_attestation: expected exactly one member, got {len(tee)}")
    ((key, value),) = tee.items()
    member = _TEE_KEYS.get(key)
    if member is None:
        raise UnsupportedError(
            f"field tee_attestation: member {key!r:.40} is not in protobuf form "
            f"({TEE_SEV_SNP_KEY!r} or {TEE_TDX_KEY!r}); JSON-form TEE evidence cannot be encoded as protobuf"
        )
    if not isinstance(value, str):
        raise MalformedEvidence(f"field tee_attestation.{key}: expected a base64 string, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"field tee_attestation.{key}: not valid standard base64") from None
    return member, raw
