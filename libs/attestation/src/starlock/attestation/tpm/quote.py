"""TPM2_Quote verification and go-tpm-tools ``server.VerifyAttestation`` (spec-attestation §5.0 step 5).

Checks, in go-tpm-tools order: signature (scheme, hash, key) → TPMS_ATTEST magic/type →
extraData → PCR selection → pcrDigest → event log replay. Deliberate differences from
go-tpm-tools (v0.4.x) are marked "Differs from go-tpm-tools" below.
"""

from __future__ import annotations

import functools
import hmac
from typing import TypeGuard, cast

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from starlock.attestation.document import Attestation, PCRs, Quote
from starlock.attestation.errors import (
    AttestationError,
    MalformedEvidence,
    NonceMismatch,
    PcrDigestMismatch,
    SignatureError,
    UntrustedKey,
)
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm.eventlog import EventLog, EventLogReplay, parse_event_log, verify_replay
from starlock.attestation.tpm.public import HASHLIB_CONSTRUCTORS, is_parse_of
from starlock.attestation.tpm.structures import (
    TPM_GENERATED_VALUE,
    AkPublicKey,
    PcrSelection,
    TpmPublic,
    TpmsAttest,
    TpmtSignature,
    parse_tpms_attest,
    parse_tpmt_public,
    parse_tpmt_signature,
    public_keys_equal,
)

__all__ = [
    "ALLOWED_SIGNATURE_HASHES",
    "QUOTE_PREFERENCE",
    "VerifiedAttestation",
    "VerifiedQuote",
    "attest_of",
    "check_signature_scheme",
    "verify_attestation",
    "verify_quote",
    "verify_signature",
]

#: Hash algorithms a quote signature may use (go-tpm-tools refuses SHA-1 signatures).
ALLOWED_SIGNATURE_HASHES = (alg.TPM_ALG_SHA256, alg.TPM_ALG_SHA384, alg.TPM_ALG_SHA512)
#: PCR banks in the order their quotes are tried; SHA-1 is appended only with ``allow_sha1``.
QUOTE_PREFERENCE = (alg.TPM_ALG_SHA512, alg.TPM_ALG_SHA384, alg.TPM_ALG_SHA256)


@attrs.frozen
class VerifiedQuote:
    """A quote whose signature, extraData, PCR selection and pcrDigest were checked."""

    attest: TpmsAttest
    signature: TpmtSignature
    pcrs: PCRs


@attrs.frozen
class VerifiedAttestation:
    """The quote that passed (the most preferred bank), its PCRs, the AK and the replayed log.

    ``event_log`` is None when the attestation carried no event log (replay skipped).
    """

    hash_alg: int
    pcrs: PCRs
    ak: TpmPublic
    ak_name: bytes
    quote: VerifiedQuote
    event_log: EventLogReplay | None

    @property
    def attest(self) -> TpmsAttest:
        return self.quote.attest


def verify_quote(ak: TpmPublic, quote: Quote, expected_extra_data: bytes) -> VerifiedQuote:
    """Verify one quote against the AK and the expected TPMS_ATTEST.extraData."""
    sig = parse_tpmt_signature(quote.raw_sig)
    _check_scheme(ak, sig)
    verify_signature(ak.public_key(), sig, quote.quote)
    attest = attest_of(quote)  # checks type == TPM_ST_ATTEST_QUOTE
    if attest.magic != TPM_GENERATED_VALUE:
        raise SignatureError(
            f"TPMS_ATTEST.magic: expected TPM_GENERATED_VALUE 0x{TPM_GENERATED_VALUE:08x}, got 0x{attest.magic:08x}"
        )
    if not hmac.compare_digest(attest.extra_data, expected_extra_data):
        raise NonceMismatch(
            f"TPMS_ATTEST.extraData: expected {expected_extra_data.hex()}, got {attest.extra_data.hex()}"
        )
    _check_pcrs(attest, quote.pcrs, sig.hash_alg)
    return VerifiedQuote(attest, sig, quote.pcrs)


def attest_of(quote: Quote) -> TpmsAttest:
    """The parsed TPMS_ATTEST of ``quote.quote``, parsed once per Quote (both are immutable).

    Raises MalformedEvidence as :func:`parse_tpms_attest` does, every time it is asked.
    """
    cached: TpmsAttest | None = getattr(quote, "_attest", None)
    if cached is not None and cached.raw is quote.quote:
        return cached
    attest = parse_tpms_attest(quote.quote)
    object.__setattr__(quote, "_attest", attest)  # the instance is frozen; this is a cache
    return attest


def verify_attestation(
    att: Attestation,
    expected_extra_data: bytes,
    trusted_ak: TpmPublic | AkPublicKey,
    *,
    allow_sha1: bool = False,
    event_log: EventLog | None = None,
    data_marks: bool = True,
) -> VerifiedAttestation:
    """go-tpm-tools ``server.VerifyAttestation`` with ``TrustedAKs=[trusted_ak]``.

    The AK in ``att.ak_pub`` must have the key material of ``trusted_ak`` (a TpmPublic or a
    cryptography key, e.g. from an AK certificate); callers that trust the document's own AK pass
    ``parse_tpmt_public(att.ak_pub)``. Quotes are tried SHA-512, SHA-384, SHA-256 (then SHA-1 if
    ``allow_sha1``); the first that verifies and whose bank the event log replays to wins.
    ``event_log``: the already parsed ``att.event_log``, for callers that parse it themselves.
    ``data_marks=False``: the replay does not mark which events' data is bound to their digest
    (every mark False; the data of :data:`DATA_BOUND_EVENT_TYPES` events is still checked), for a
    caller that takes the marks from another bank.
    """
    if isinstance(trusted_ak, TpmPublic) and is_parse_of(trusted_ak, att.ak_pub):
        ak = trusted_ak  # the caller parsed these very bytes: the same value, no need to parse again
    else:
        ak = parse_tpmt_public(att.ak_pub)
    if ak is not trusted_ak and not public_keys_equal(ak, trusted_ak):
        raise UntrustedKey(f"ak_pub: the AK (name {ak.name().hex()}) is not the trusted attestation key")
    log: EventLog | None = event_log
    if log is None and att.event_log:
        log = parse_event_log(att.event_log)
    order = QUOTE_PREFERENCE + ((alg.TPM_ALG_SHA1,) if allow_sha1 else ())
    candidates = [q for bank in order for q in att.quotes if q.pcrs.hash == bank]
    if not candidates:
        present = ", ".join(q.pcrs.hash_name for q in att.quotes) or "none"
        allowed = ", ".join(alg.alg_name(a) for a in order)
        raise MalformedEvidence(f"quotes: no quote over an allowed bank ({allowed}); banks present: {present}")
    failures: list[tuple[Quote, AttestationError]] = []
    for quote in candidates:
        try:
            verified = verify_quote(ak, quote, expected_extra_data)
            replayed = verify_replay(log, quote.pcrs, marks=data_marks) if log is not None else None
        except AttestationError as exc:
            failures.append((quote, exc))
            continue
        return VerifiedAttestation(
            hash_alg=quote.pcrs.hash,
            pcrs=quote.pcrs,
            ak=ak,
            ak_name=ak.name(),
            quote=verified,
            event_log=replayed,
        )
    # Differs from go-tpm-tools: it returns the error of the last (least preferred) quote; this
    # raises the kind of error of the most preferred quote, with every quote's reason in the message.
    first_exc = failures[0][1]
    reasons = "; ".join(f"{q.pcrs.hash_name} quote: {exc}" for q, exc in failures)
    raise type(first_exc)(f"no quote verified: {reasons}", check=first_exc.check) from first_exc


def check_signature_scheme(key_type: int, sig: TpmtSignature) -> None:
    """The signature's hash and algorithm are ones a ``key_type`` (TPM_ALG_RSA/ECC) AK may use."""
    if sig.hash_alg not in ALLOWED_SIGNATURE_HASHES:
        allowed = ", ".join(alg.alg_name(a) for a in ALLOWED_SIGNATURE_HASHES)
        raise SignatureError(f"TPMT_SIGNATURE.hash: {alg.alg_name(sig.hash_alg)} is not allowed ({allowed})")
    if key_type == alg.TPM_ALG_RSA:
        # Differs from go-tpm-tools, which accepts only RSASSA for RSA AKs: RSAPSS is accepted too.
        allowed_algs: tuple[int, ...] = (alg.TPM_ALG_RSASSA, alg.TPM_ALG_RSAPSS)
    else:
        allowed_algs = (alg.TPM_ALG_ECDSA,)
    if sig.sig_alg not in allowed_algs:
        raise SignatureError(
            f"TPMT_SIGNATURE.sigAlg: {alg.alg_name(sig.sig_alg)} cannot be made by a {alg.alg_name(key_type)} AK"
        )


def _check_scheme(ak: TpmPublic, sig: TpmtSignature) -> None:
    check_signature_scheme(ak.type, sig)
    scheme = ak.scheme
    # Differs from go-tpm-tools (which ignores the AK's scheme): when the AK fixes a scheme, the
    # signature must use exactly that scheme and hash, as a TPM signing with that key would.
    if scheme.scheme != alg.TPM_ALG_NULL and (scheme.scheme, scheme.hash_alg) != (sig.sig_alg, sig.hash_alg):
        raise SignatureError(
            f"TPMT_SIGNATURE: scheme {alg.alg_name(sig.sig_alg)}-{alg.alg_name(sig.hash_alg)} differs from the AK's "
            f"scheme {alg.alg_name(scheme.scheme)}-{alg.alg_name(scheme.hash_alg)}"
        )


_PKCS1V15 = padding.PKCS1v15()  # holds no state


@functools.lru_cache(maxsize=8)
def _is_rsa_type(key_type: type) -> bool:
    return issubclass(key_type, rsa.RSAPublicKey)  # an ABC check: a Python-level call each time


def _is_rsa(key: AkPublicKey) -> TypeGuard[rsa.RSAPublicKey]:
    # isinstance too, for an object whose __class__ is not its type (a proxy); EC keys are rare.
    return _is_rsa_type(type(key)) or isinstance(key, rsa.RSAPublicKey)


def verify_signature(key: AkPublicKey, sig: TpmtSignature, message: bytes) -> None:
    """Verify ``sig`` over ``message`` under ``key`` (after :func:`check_signature_scheme`)."""
    hash_ = alg.hash_for(sig.hash_alg, "TPMT_SIGNATURE.hash")
    try:
        if _is_rsa(key):
            if sig.sig_alg == alg.TPM_ALG_RSASSA:
                key.verify(sig.rsa_sig, message, _PKCS1V15, hash_)
                return
            # RSASSA-PSS (TPM 2.0 Part 1, annex B.7): the salt is as long as the digest when the TPM
            # follows FIPS 186-4, else the longest the key allows. Both are accepted, nothing else.
            # (padding.PSS.MAX_LENGTH would mean "any length" when verifying, so compute the maximum.)
            max_salt = (key.key_size + 6) // 8 - hash_.digest_size - 2
            for salt in (hash_.digest_size, max_salt):
                try:
                    pss = padding.PSS(mgf=padding.MGF1(hash_), salt_length=salt)
                    key.verify(sig.rsa_sig, message, pss, hash_)
                    return
                except InvalidSignature:
                    continue
            raise InvalidSignature
        r, s = int.from_bytes(sig.ecdsa_r, "big"), int.from_bytes(sig.ecdsa_s, "big")
        cast(ec.EllipticCurvePublicKey, key).verify(encode_dss_signature(r, s), message, ec.ECDSA(hash_))
    except (InvalidSignature, ValueError):
        raise SignatureError(
            f"quote signature ({alg.alg_name(sig.sig_alg)}-{alg.alg_name(sig.hash_alg)}) does not verify "
            "under the AK over TPMS_ATTEST"
        ) from None


@functools.lru_cache(maxsize=64)
def _selected_set(select: bytes) -> frozenset[int]:
    return frozenset(PcrSelection(alg.TPM_ALG_NULL, select).indices)


def _check_pcrs(attest: TpmsAttest, pcrs: PCRs, sig_hash: int) -> None:
    # As go-tpm-tools: exactly one TPMS_PCR_SELECTION, for the bank of the supplied PCRs.
    if len(attest.pcr_select) != 1 or attest.pcr_select[0].hash_alg != pcrs.hash:
        banks = ", ".join(f"{alg.alg_name(s.hash_alg)} {list(s.indices)}" for s in attest.pcr_select) or "none"
        raise PcrDigestMismatch(
            f"TPMS_ATTEST.pcrSelect: expected one selection of the {pcrs.hash_name} bank, got {banks}"
        )
    selection = attest.pcr_select[0]
    selected = selection.indices
    values = pcrs.pcrs
    if values.keys() != _selected_set(selection.select):
        raise PcrDigestMismatch(
            f"TPMS_ATTEST.pcrSelect: quote selects {pcrs.hash_name} PCRs {list(selected)}, "
            f"the supplied PCRs are {sorted(values)}"
        )
    # The TPM hashes the selected PCR values (ascending index) with the signing scheme's hash.
    concatenated = b"".join(map(values.__getitem__, selected))
    new = HASHLIB_CONSTRUCTORS.get(sig_hash)
    expected = new(concatenated).digest() if new else alg.digest(sig_hash, concatenated, "pcrDigest hash")
    if not hmac.compare_digest(attest.pcr_digest, expected):
        raise PcrDigestMismatch(
            f"TPMS_ATTEST.pcrDigest: quoted {attest.pcr_digest.hex()}, the supplied {pcrs.hash_name} PCRs "
            f"hash to {expected.hex()} ({alg.alg_name(sig_hash)})"
        )
