"""go-tpm-tools attestation cases: the real vectors (aws-nitrotpm, gcp-vtpm) and re-signed copies.

Starlock runs ``starlock.attestation.tpm.verify_attestation`` on the protobuf as parsed by
``attestation_from_pb``; Go runs ``server.VerifyAttestation`` with ``TrustedAKs`` and
``AllowSHA1=false``. The re-signed bases replace the AK by a key of ours and re-sign every quote,
so edits of any TPMS_ATTEST field can be tried with a valid signature.
"""

from __future__ import annotations

import functools
import hashlib
import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
from _common import Case, Verdict, b64, flip
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from starlock.attestation._proto.convert import attestation_from_pb, attestation_to_pb
from starlock.attestation.document import Attestation, AttestationDocument, PCRs, Quote
from starlock.attestation.errors import AttestationError
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm import parse_tpmt_public, verify_attestation

AWS_DOC = "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt"
AWS_EXTRA_DATA = bytes.fromhex("b3c5249a218214133262f5a943570890eca99f0f2cf6eca036f72a0f26189696")
GCE_PB = "gcp-vtpm/gotpmtools-gce-cos85-nonce9009/gce-cos-85-nonce9009.pb"
GCE_NONCE = b"\x90\x09"
_DIGEST_SIZES = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32}
_HASHES = {
    alg.TPM_ALG_SHA1: hashes.SHA1(),
    alg.TPM_ALG_SHA256: hashes.SHA256(),
    alg.TPM_ALG_SHA384: hashes.SHA384(),
    alg.TPM_ALG_SHA512: hashes.SHA512(),
}
AK_ATTRIBUTES = 0x00050072  # fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign


@attrs.frozen
class TpmBase:
    label: str
    attestation: Attestation
    nonce: bytes
    trusted_ak: bytes  # TPMT_PUBLIC
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None  # for re-signing


def _starlock(pb: bytes, nonce: bytes, trusted_ak: bytes) -> Verdict:
    try:
        att = attestation_from_pb(pb)
        verify_attestation(att, nonce, parse_tpmt_public(trusted_ak))
    except AttestationError as exc:
        return Verdict(False, exc.check, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # anything but AttestationError for bad evidence is a Starlock bug
        return Verdict(False, "crash", f"{type(exc).__name__}: {exc}")
    return Verdict(True, "accept", "")


def make_case(case_id: str, tag: str, base: TpmBase, *, att: Attestation | None = None, **changes: bytes) -> Case:
    pb = attestation_to_pb(att if att is not None else base.attestation)
    nonce = changes.get("nonce", base.nonce)
    trusted = changes.get("trusted_ak", base.trusted_ak)
    pb = changes.get("pb", pb)
    request = {
        "id": case_id,
        "kind": "tpm",
        "attestation": b64(pb),
        "nonce": b64(nonce),
        "trusted_aks": [b64(trusted)],
    }
    return Case(case_id, tag, request, lambda: _starlock(pb, nonce, trusted))


# --- encodings ----------------------------------------------------------------------------------------


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def rsa_ak_public(
    key: rsa.RSAPublicKey, scheme: int = alg.TPM_ALG_RSASSA, scheme_hash: int = alg.TPM_ALG_SHA256
) -> bytes:
    n = key.public_numbers().n
    scheme_bytes = struct.pack(">H", scheme) + (struct.pack(">H", scheme_hash) if scheme != alg.TPM_ALG_NULL else b"")
    return (
        struct.pack(">HHI", alg.TPM_ALG_RSA, alg.TPM_ALG_SHA256, AK_ATTRIBUTES)
        + _tpm2b(b"")
        + struct.pack(">H", alg.TPM_ALG_NULL)
        + scheme_bytes
        + struct.pack(">HI", key.key_size, 0)
        + _tpm2b(n.to_bytes(key.key_size // 8, "big"))
    )


def ecc_ak_public(key: ec.EllipticCurvePublicKey, scheme_hash: int = alg.TPM_ALG_SHA256) -> bytes:
    nums = key.public_numbers()
    return (
        struct.pack(">HHI", alg.TPM_ALG_ECC, alg.TPM_ALG_SHA256, AK_ATTRIBUTES)
        + _tpm2b(b"")
        + struct.pack(">HHH", alg.TPM_ALG_NULL, alg.TPM_ALG_ECDSA, scheme_hash)
        + struct.pack(">HH", 0x0003, alg.TPM_ALG_NULL)  # TPM_ECC_NIST_P256, KDF null
        + _tpm2b(nums.x.to_bytes(32, "big"))
        + _tpm2b(nums.y.to_bytes(32, "big"))
    )


def sign(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    message: bytes,
    *,
    sig_alg: int | None = None,
    hash_alg: int = alg.TPM_ALG_SHA256,
) -> bytes:
    h = _HASHES[hash_alg]
    if isinstance(key, rsa.RSAPrivateKey):
        sig_alg = sig_alg or alg.TPM_ALG_RSASSA
        if sig_alg == alg.TPM_ALG_RSAPSS:
            raw = key.sign(message, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
        else:
            raw = key.sign(message, padding.PKCS1v15(), h)
        return struct.pack(">HH", sig_alg, hash_alg) + _tpm2b(raw)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(h)))
    return (
        struct.pack(">HH", alg.TPM_ALG_ECDSA, hash_alg) + _tpm2b(r.to_bytes(32, "big")) + _tpm2b(s.to_bytes(32, "big"))
    )


def attest_fields(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, name) of the TPMS_ATTEST fields of a quote."""
    out = [(0, 4, "magic"), (4, 6, "type")]
    pos = 6
    for name in ("qualifiedSigner", "extraData"):
        (size,) = struct.unpack_from(">H", data, pos)
        out.append((pos, pos + 2, f"{name}.size"))
        if size:
            out.append((pos + 2, pos + 2 + size, name))
        pos += 2 + size
    out += [(pos, pos + 17, "clockInfo"), (pos + 17, pos + 25, "firmwareVersion")]
    pos += 25
    (count,) = struct.unpack_from(">I", data, pos)
    out.append((pos, pos + 4, "pcrSelect.count"))
    pos += 4
    for _ in range(count):
        size = data[pos + 2]
        out += [(pos, pos + 2, "pcrSelect.hash"), (pos + 2, pos + 3, "pcrSelect.size")]
        out.append((pos + 3, pos + 3 + size, "pcrSelect.bitmap"))
        pos += 3 + size
    out.append((pos, pos + 2, "pcrDigest.size"))
    out.append((pos + 2, len(data), "pcrDigest"))
    return out


def public_fields(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, name) of the fields of an RSA or ECC TPMT_PUBLIC (test data: trusted)."""
    (kind,) = struct.unpack_from(">H", data, 0)
    out = [(0, 2, "type"), (2, 4, "nameAlg"), (4, 8, "objectAttributes")]
    (size,) = struct.unpack_from(">H", data, 8)
    out.append((8, 10 + size, "authPolicy"))
    pos = 10 + size
    out.append((pos, pos + 2, "symmetric"))
    pos += 2
    (scheme,) = struct.unpack_from(">H", data, pos)
    n = 4 if scheme != alg.TPM_ALG_NULL else 2
    out.append((pos, pos + n, "scheme"))
    pos += n
    if kind == alg.TPM_ALG_RSA:
        out += [(pos, pos + 2, "keyBits"), (pos + 2, pos + 6, "exponent")]
        pos += 6
        names = ["unique.n"]
    else:
        out += [(pos, pos + 2, "curveID"), (pos + 2, pos + 4, "kdf")]
        pos += 4
        names = ["unique.x", "unique.y"]
    for name in names:
        (size,) = struct.unpack_from(">H", data, pos)
        out += [(pos, pos + 2, f"{name}.size"), (pos + 2, pos + 2 + size, name)]
        pos += 2 + size
    return out


def event_log_parts(log: bytes) -> list[tuple[int, int, str]]:
    """(start, end, name) of every part of a crypto-agile TCG event log (test data: trusted)."""
    out: list[tuple[int, int, str]] = []
    (size,) = struct.unpack_from("<I", log, 28)
    out.append((0, 32 + size, "specid-event"))
    pos = 32 + size
    while pos + 12 <= len(log):
        _pcr, ev_type, count = struct.unpack_from("<III", log, pos)
        out += [(pos, pos + 4, "pcr-index"), (pos + 4, pos + 8, "event-type"), (pos + 8, pos + 12, "digest-count")]
        pos += 12
        for _ in range(count):
            (alg_id,) = struct.unpack_from("<H", log, pos)
            n = _DIGEST_SIZES[alg_id]
            bank = {0x0004: "SHA1", 0x000B: "SHA256", 0x000C: "SHA384", 0x000D: "SHA512"}.get(alg_id, "other")
            out += [(pos, pos + 2, "digest-alg"), (pos + 2, pos + 2 + n, f"digest.{bank}")]
            pos += 2 + n
        (data_size,) = struct.unpack_from("<I", log, pos)
        out.append((pos, pos + 4, "event-size"))
        if data_size:
            out.append((pos + 4, pos + 4 + data_size, f"event-data.type{ev_type:#x}"))
        pos += 4 + data_size
    return out


# --- bases --------------------------------------------------------------------------------------------


def vector_bases(v: Path) -> list[TpmBase]:
    # The SNP report inside (JSON form) is not part of VerifyAttestation and has no protobuf form here.
    aws = attrs.evolve(AttestationDocument.from_json((v / AWS_DOC).read_bytes()).attestation, tee_attestation=None)
    gce = attestation_from_pb((v / GCE_PB).read_bytes())
    return [
        TpmBase("aws-nitrotpm-2023-06", aws, AWS_EXTRA_DATA, aws.ak_pub),
        TpmBase("gce-cos85-nonce9009", gce, GCE_NONCE, gce.ak_pub),
    ]


@functools.cache
def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def _ecc_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def resigned_bases(vector: list[TpmBase]) -> list[TpmBase]:
    """Each vector with the AK replaced by a key of ours (RSA, and ECC P-256) and every quote re-signed."""
    out = []
    for base in vector:
        for name, key, ak_pub in (
            ("rsa", _rsa_key(), rsa_ak_public(_rsa_key().public_key())),
            ("ecc", _ecc_key(), ecc_ak_public(_ecc_key().public_key())),
        ):
            quotes = tuple(attrs.evolve(q, raw_sig=sign(key, q.quote)) for q in base.attestation.quotes)
            att = attrs.evolve(base.attestation, ak_pub=ak_pub, quotes=quotes, ak_cert=b"", intermediate_certs=())
            out.append(TpmBase(f"{base.label}-resigned-{name}", att, base.nonce, ak_pub, key))
    return out


def _replace_quote(att: Attestation, index: int, quote: Quote) -> Attestation:
    quotes = list(att.quotes)
    quotes[index] = quote
    return attrs.evolve(att, quotes=tuple(quotes))


# --- generators ---------------------------------------------------------------------------------------


def structured(vector: list[TpmBase], resigned: list[TpmBase]) -> Iterator[Case]:
    """Fixed cases: as given, nonces, AKs, quote sets, event log presence, signature schemes."""
    other_ak = rsa_ak_public(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    for base in vector + resigned:
        p = f"tpm.{base.label}"
        t = "tpm.vector" if base.key is None else "tpm.resigned"
        att = base.attestation
        yield make_case(f"{p}#as-given", f"{t}.as-given", base)
        for name, nonce in (
            ("empty", b""),
            ("last-byte", flip(base.nonce, len(base.nonce) - 1, 1)),
            ("truncated", base.nonce[:-1]),
            ("extended", base.nonce + b"\x00"),
            ("zero-of-same-size", bytes(len(base.nonce))),
        ):
            yield make_case(f"{p}#nonce.{name}", f"{t}.nonce.{name}", base, nonce=nonce)
        yield make_case(f"{p}#trusted-ak.other", f"{t}.trusted-ak.other", base, trusted_ak=other_ak)
        yield make_case(f"{p}#event-log.dropped", f"{t}.event-log.dropped", base, att=attrs.evolve(att, event_log=b""))
        yield make_case(f"{p}#quotes.none", f"{t}.quotes.none", base, att=attrs.evolve(att, quotes=()))
        for i, q in enumerate(att.quotes):
            bank = q.pcrs.hash_name
            only = attrs.evolve(att, quotes=(q,))
            yield make_case(f"{p}#quotes.only-{bank}", f"{t}.quotes.only-{bank}", base, att=only)
            rest = attrs.evolve(att, quotes=tuple(x for j, x in enumerate(att.quotes) if j != i))
            yield make_case(f"{p}#quotes.without-{bank}", f"{t}.quotes.without-{bank}", base, att=rest)
            for idx in (0, 4, 7, 8, 15, 23):
                if idx in q.pcrs.pcrs:
                    values = dict(q.pcrs.pcrs)
                    values[idx] = flip(values[idx], 0, 1)
                    changed = _replace_quote(att, i, attrs.evolve(q, pcrs=PCRs(q.pcrs.hash, values)))
                    yield make_case(f"{p}#pcr.{bank}.{idx}", f"{t}.pcr-value.{bank}", base, att=changed)
                    changed_all = attrs.evolve(
                        att,
                        quotes=tuple(
                            attrs.evolve(x, pcrs=PCRs(x.pcrs.hash, {**x.pcrs.pcrs, idx: flip(x.pcrs.pcrs[idx], 0, 1)}))
                            for x in att.quotes
                        ),
                    )
                    yield make_case(f"{p}#pcr.all.{idx}", f"{t}.pcr-value.all-banks", base, att=changed_all)
            values = dict(q.pcrs.pcrs)
            values.pop(23, None)
            dropped = _replace_quote(att, i, attrs.evolve(q, pcrs=PCRs(q.pcrs.hash, values)))
            yield make_case(f"{p}#pcr.{bank}.drop23", f"{t}.pcr-dropped.{bank}", base, att=dropped)
        if base.key is not None:
            yield from _signature_schemes(base, p, t)


def _signature_schemes(base: TpmBase, p: str, t: str) -> Iterator[Case]:
    key = base.key
    assert key is not None
    att = base.attestation
    variants: list[tuple[str, Callable[[bytes], bytes]]] = [
        (f"sig-hash-{name}", functools.partial(sign, key, hash_alg=h))
        for name, h in (("sha1", alg.TPM_ALG_SHA1), ("sha384", alg.TPM_ALG_SHA384), ("sha512", alg.TPM_ALG_SHA512))
    ]
    if isinstance(key, rsa.RSAPrivateKey):
        variants.append(("rsapss-sha256", functools.partial(sign, key, sig_alg=alg.TPM_ALG_RSAPSS)))
        null_ak = rsa_ak_public(key.public_key(), scheme=alg.TPM_ALG_NULL)
        yield make_case(
            f"{p}#ak.null-scheme",
            f"{t}.ak.null-scheme",
            base,
            att=attrs.evolve(att, ak_pub=null_ak),
            trusted_ak=null_ak,
        )
    for name, signer in variants:
        quotes = tuple(attrs.evolve(q, raw_sig=signer(q.quote)) for q in att.quotes)
        yield make_case(f"{p}#scheme.{name}", f"{t}.scheme.{name}", base, att=attrs.evolve(att, quotes=quotes))


def quote_flips(bases: list[TpmBase], rng: random.Random) -> Iterator[Case]:
    """Endless: one bit of one field of one quote (TPMS_ATTEST or TPMT_SIGNATURE), re-signed for
    the re-signed bases; or one bit of the AK public area."""
    while True:
        base = rng.choice(bases)
        att = base.attestation
        i = rng.randrange(len(att.quotes))
        q = att.quotes[i]
        what = rng.choice(("attest", "attest", "signature", "ak_pub"))
        t = "tpm.vector" if base.key is None else "tpm.resigned"
        bank = q.pcrs.hash_name
        if what == "attest":
            start, end, name = rng.choice(attest_fields(q.quote))
            offset, mask = rng.randrange(start, end), 1 << rng.randrange(8)
            data = flip(q.quote, offset, mask)
            sig = sign(base.key, data) if base.key is not None else q.raw_sig
            changed = _replace_quote(att, i, attrs.evolve(q, quote=data, raw_sig=sig))
            tag = f"{t}.attest-flip.{bank}.{name}"
        elif what == "signature":
            offset, mask = rng.randrange(len(q.raw_sig)), 1 << rng.randrange(8)
            name = "header" if offset < 4 else "size" if offset < 6 else "value"
            changed = _replace_quote(att, i, attrs.evolve(q, raw_sig=flip(q.raw_sig, offset, mask)))
            tag = f"{t}.signature-flip.{bank}.{name}"
        else:
            start, end, name = rng.choice(public_fields(att.ak_pub))
            offset, mask = rng.randrange(start, end), 1 << rng.randrange(8)
            changed = attrs.evolve(att, ak_pub=flip(att.ak_pub, offset, mask))
            tag = f"{t}.ak-pub-flip.{name}"
        yield make_case(f"tpm.{base.label}#{what}[{i}]@{offset}^{mask:02x}", tag, base, att=changed)


def event_log_flips(bases: list[TpmBase], rng: random.Random) -> Iterator[Case]:
    """Endless: one bit of the event log flipped, tagged with the part of the log it falls in."""
    parts = {b.label: event_log_parts(b.attestation.event_log) for b in bases}
    while True:
        base = rng.choice(bases)
        start, end, name = rng.choice(parts[base.label])
        offset, mask = rng.randrange(start, end), 1 << rng.randrange(8)
        log = flip(base.attestation.event_log, offset, mask)
        digest = hashlib.sha256(log).hexdigest()[:8]
        yield make_case(
            f"tpm.{base.label}#eventlog@{offset}^{mask:02x}.{digest}",
            f"tpm.eventlog-flip.{name}",
            base,
            att=attrs.evolve(base.attestation, event_log=log),
        )
