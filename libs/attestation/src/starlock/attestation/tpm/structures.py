"""TPM 2.0 wire structures of a quote (TCG TPM 2.0 Part 2): TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC.

All parsers take bytes, are bounded (``MAX_*`` sizes) and raise only :class:`MalformedEvidence`.
TPMT_PUBLIC lives in :mod:`starlock.attestation.tpm.public` and is re-exported here.
"""

from __future__ import annotations

import functools
import struct

import attrs

from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm._reader import Reader, check_size
from starlock.attestation.tpm.public import (
    AkPublicKey,
    EccParms,
    RsaParms,
    Scheme,
    SymDef,
    TpmPublic,
    parse_tpmt_public,
    public_keys_equal,
)

__all__ = [
    "MAX_TPMS_ATTEST_SIZE",
    "MAX_TPMT_SIGNATURE_SIZE",
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_QUOTE",
    "AkPublicKey",
    "ClockInfo",
    "EccParms",
    "PcrSelection",
    "RsaParms",
    "Scheme",
    "SymDef",
    "TpmPublic",
    "TpmsAttest",
    "TpmtSignature",
    "parse_tpms_attest",
    "parse_tpmt_public",
    "parse_tpmt_signature",
    "public_keys_equal",
]

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018

#: Upper bounds of the serialised structures (real quotes are about 150 bytes, signatures ≤ 518).
MAX_TPMS_ATTEST_SIZE = 1024
MAX_TPMT_SIGNATURE_SIZE = 1024
_MAX_NAME = 2 + 64  # TPMU_NAME: hash alg + digest
_MAX_DIGEST = 64  # TPMU_HA
_MAX_PCR_BANKS = 16  # HASH_COUNT is far smaller on every TPM
_MAX_SIZEOF_SELECT = 4  # 32 PCRs
_MAX_RSA_SIG = 512
_MAX_ECC_PARAM = 128


@attrs.frozen
class ClockInfo:
    """TPMS_CLOCK_INFO."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@attrs.frozen
class PcrSelection:
    """TPMS_PCR_SELECTION: a bank and a bitmap (bit ``i % 8`` of byte ``i // 8`` selects PCR ``i``)."""

    hash_alg: int
    select: bytes

    @property
    def indices(self) -> tuple[int, ...]:
        """Selected PCR indices, ascending (the order the TPM concatenates them in)."""
        return _selected(self.select)


@functools.lru_cache(maxsize=64)
def _selected(select: bytes) -> tuple[int, ...]:
    bits = int.from_bytes(select, "little")  # bit i % 8 of byte i // 8 is bit i
    return tuple(i for i in range(len(select) * 8) if bits >> i & 1)


@attrs.frozen
class TpmsAttest:
    """TPMS_ATTEST of a quote: the header fields and TPMS_QUOTE_INFO (``pcr_select``, ``pcr_digest``)."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    pcr_select: tuple[PcrSelection, ...]
    pcr_digest: bytes
    raw: bytes = attrs.field(repr=False)


@attrs.frozen
class TpmtSignature:
    """TPMT_SIGNATURE for RSASSA / RSAPSS (``rsa_sig``) or ECDSA (``ecdsa_r``, ``ecdsa_s``, big-endian)."""

    sig_alg: int
    hash_alg: int
    rsa_sig: bytes = b""
    ecdsa_r: bytes = b""
    ecdsa_s: bytes = b""


_ATTEST_HEAD = struct.Struct(">IHH")  # magic, type, qualifiedSigner.size
_ATTEST_CLOCK = struct.Struct(">QIIBQI")  # clockInfo, firmwareVersion, pcrSelect.count
_SELECTION_HEAD = struct.Struct(">HB")  # hash, sizeofSelect
_U16 = struct.Struct(">H")
_RSA_SIG_HEAD = struct.Struct(">HHH")  # sigAlg, hash, sig.size


def parse_tpms_attest(data: bytes) -> TpmsAttest:
    """Parse the TPMS_ATTEST of a TPM2_Quote (type TPM_ST_ATTEST_QUOTE); trailing bytes are rejected.

    The magic is parsed, not checked: :func:`~starlock.attestation.tpm.quote.verify_quote` checks it
    after the signature, so that the error says which check failed.
    """
    check_size(data, "TPMS_ATTEST", MAX_TPMS_ATTEST_SIZE)
    data = bytes(data)
    return _attest_fast(data) or _attest_checked(data)


def _attest_fast(data: bytes) -> TpmsAttest | None:
    """The well-formed case with ``struct``; None on anything else (then :func:`_attest_checked` says why).

    Every slice is followed by an unpack at the offset after it, which raises ``struct.error`` if
    the input is shorter; so when all unpacks succeed, every slice was whole.
    """
    try:
        magic, att_type, signer_size = _ATTEST_HEAD.unpack_from(data)
        pos = _ATTEST_HEAD.size + signer_size
        qualified_signer = data[_ATTEST_HEAD.size : pos]
        (extra_size,) = _U16.unpack_from(data, pos)
        pos += 2
        extra_data = data[pos : pos + extra_size]
        pos += extra_size
        clock, reset_count, restart_count, safe, firmware_version, count = _ATTEST_CLOCK.unpack_from(data, pos)
        pos += _ATTEST_CLOCK.size
        if count > _MAX_PCR_BANKS:
            return None
        selections = []
        for _ in range(count):
            hash_alg, select_size = _SELECTION_HEAD.unpack_from(data, pos)
            pos += _SELECTION_HEAD.size
            selections.append(PcrSelection(hash_alg, data[pos : pos + select_size]))
            pos += select_size
        (digest_size,) = _U16.unpack_from(data, pos)
    except struct.error:
        return None
    pos += 2
    well_formed = (
        att_type == TPM_ST_ATTEST_QUOTE
        and signer_size <= _MAX_NAME
        and extra_size <= _MAX_DIGEST
        and safe <= 1
        and all(len(s.select) <= _MAX_SIZEOF_SELECT for s in selections)
        and digest_size <= _MAX_DIGEST
        and pos + digest_size == len(data)
    )
    if not well_formed:
        return None
    # Positional, in field order (magic, type, qualified_signer, extra_data, clock_info,
    # firmware_version, pcr_select, pcr_digest, raw): keywords cost more on this hot path.
    return TpmsAttest(
        magic,
        att_type,
        qualified_signer,
        extra_data,
        ClockInfo(clock, reset_count, restart_count, bool(safe)),
        firmware_version,
        tuple(selections),
        data[pos:],
        data,
    )


def _attest_checked(data: bytes) -> TpmsAttest:
    """Field by field with the bounded reader, whose errors name the field."""
    r = Reader(data, "TPMS_ATTEST")
    magic = r.u32("magic")
    att_type = r.u16("type")
    if att_type != TPM_ST_ATTEST_QUOTE:
        raise MalformedEvidence(
            f"TPMS_ATTEST.type: expected TPM_ST_ATTEST_QUOTE (0x{TPM_ST_ATTEST_QUOTE:04x}), got 0x{att_type:04x}"
        )
    qualified_signer = r.tpm2b("qualifiedSigner", _MAX_NAME)
    extra_data = r.tpm2b("extraData", _MAX_DIGEST)
    clock = r.u64("clockInfo.clock")
    reset_count = r.u32("clockInfo.resetCount")
    restart_count = r.u32("clockInfo.restartCount")
    safe = r.u8("clockInfo.safe")
    if safe > 1:
        raise MalformedEvidence(f"TPMS_ATTEST.clockInfo.safe: TPMI_YES_NO must be 0 or 1, got {safe}")
    firmware_version = r.u64("firmwareVersion")
    count = r.u32("attested.quote.pcrSelect.count")
    if count > _MAX_PCR_BANKS:
        raise MalformedEvidence(f"TPMS_ATTEST.attested.quote.pcrSelect: {count} banks, at most {_MAX_PCR_BANKS}")
    selections = []
    for i in range(count):
        field = f"attested.quote.pcrSelect[{i}]"
        hash_alg = r.u16(f"{field}.hash")
        size = r.u8(f"{field}.sizeofSelect")
        if size > _MAX_SIZEOF_SELECT:
            raise MalformedEvidence(f"TPMS_ATTEST.{field}.sizeofSelect: {size}, at most {_MAX_SIZEOF_SELECT}")
        selections.append(PcrSelection(hash_alg, r.take(size, f"{field}.pcrSelect")))
    pcr_digest = r.tpm2b("attested.quote.pcrDigest", _MAX_DIGEST)
    r.end()
    return TpmsAttest(
        magic=magic,
        type=att_type,
        qualified_signer=qualified_signer,
        extra_data=extra_data,
        clock_info=ClockInfo(clock, reset_count, restart_count, bool(safe)),
        firmware_version=firmware_version,
        pcr_select=tuple(selections),
        pcr_digest=pcr_digest,
        raw=bytes(data),
    )


def parse_tpmt_signature(data: bytes) -> TpmtSignature:
    """Parse a TPMT_SIGNATURE with sigAlg RSASSA (0x0014), RSAPSS (0x0016) or ECDSA (0x0018)."""
    check_size(data, "TPMT_SIGNATURE", MAX_TPMT_SIGNATURE_SIZE)
    data = bytes(data)
    if len(data) >= _RSA_SIG_HEAD.size:  # fast path: RSASSA/RSAPSS, well formed
        sig_alg, hash_alg, size = _RSA_SIG_HEAD.unpack_from(data)
        if (
            sig_alg in (alg.TPM_ALG_RSASSA, alg.TPM_ALG_RSAPSS)
            and size <= _MAX_RSA_SIG
            and len(data) == _RSA_SIG_HEAD.size + size
        ):
            return TpmtSignature(sig_alg, hash_alg, rsa_sig=data[_RSA_SIG_HEAD.size :])
    r = Reader(data, "TPMT_SIGNATURE")
    sig_alg = r.u16("sigAlg")
    if sig_alg in (alg.TPM_ALG_RSASSA, alg.TPM_ALG_RSAPSS):
        hash_alg = r.u16("signature.rsa.hash")
        sig = TpmtSignature(sig_alg, hash_alg, rsa_sig=r.tpm2b("signature.rsa.sig", _MAX_RSA_SIG))
    elif sig_alg == alg.TPM_ALG_ECDSA:
        hash_alg = r.u16("signature.ecdsa.hash")
        sig_r = r.tpm2b("signature.ecdsa.signatureR", _MAX_ECC_PARAM)
        sig_s = r.tpm2b("signature.ecdsa.signatureS", _MAX_ECC_PARAM)
        sig = TpmtSignature(sig_alg, hash_alg, ecdsa_r=sig_r, ecdsa_s=sig_s)
    else:
        raise MalformedEvidence(
            f"TPMT_SIGNATURE.sigAlg: {alg.alg_name(sig_alg)} is not supported, expected RSASSA, RSAPSS or ECDSA"
        )
    r.end()
    return sig
