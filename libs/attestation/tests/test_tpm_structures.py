"""TPMT_PUBLIC / TPMS_ATTEST / TPMT_SIGNATURE parsing.

Real bytes come from aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt (MANIFEST: "AK:
akPub is a TPMT_PUBLIC, RSA-2048 with scheme RSASSA-SHA256. Its TPM name is 000b5d50b949…";
"3 quotes (SHA-256, SHA-384 and SHA-512 banks, PCRs 0–23)"). Synthetic structures are built by the
helpers below (also used by test_tpm_quote.py) from the TPM 2.0 Part 2 layouts.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from byte_edits import EDITS, apply_edits, outcome
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.tpm import (
    PcrSelection,
    SymDef,
    TpmPublic,
    parse_tpms_attest,
    parse_tpmt_public,
    parse_tpmt_signature,
    public_keys_equal,
)
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm import public as tpm_public

AWS_DOC = "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt"
AWS_AK_NAME = "000b5d50b949f465994a8aa735a967abf8b55f3581d854c9c66332d103396f4fe6d0"
AWS_EXTRA_DATA = "b3c5249a218214133262f5a943570890eca99f0f2cf6eca036f72a0f26189696"

# TPMA_OBJECT of a typical AK: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign.
AK_ATTRIBUTES = 0x00050072
ECC_CURVE_IDS = {"secp256r1": 0x0003, "secp384r1": 0x0004, "secp521r1": 0x0005}


# --- builders (TPM 2.0 Part 2 wire layouts, big-endian) ------------------------------------------


def tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def rsa_public_bytes(
    key: rsa.RSAPublicKey,
    *,
    scheme: int = alg.TPM_ALG_RSASSA,
    scheme_hash: int = alg.TPM_ALG_SHA256,
    attributes: int = AK_ATTRIBUTES,
    name_alg: int = alg.TPM_ALG_SHA256,
    exponent: int | None = 0,
) -> bytes:
    numbers = key.public_numbers()
    if exponent is None:
        exponent = numbers.e
    scheme_bytes = struct.pack(">H", scheme)
    if scheme != alg.TPM_ALG_NULL:
        scheme_bytes += struct.pack(">H", scheme_hash)
    key_bits = key.key_size
    return (
        struct.pack(">HHI", alg.TPM_ALG_RSA, name_alg, attributes)
        + tpm2b(b"")
        + struct.pack(">H", alg.TPM_ALG_NULL)
        + scheme_bytes
        + struct.pack(">HI", key_bits, exponent)
        + tpm2b(numbers.n.to_bytes(key_bits // 8, "big"))
    )


def ecc_public_bytes(
    key: ec.EllipticCurvePublicKey,
    *,
    scheme: int = alg.TPM_ALG_ECDSA,
    scheme_hash: int = alg.TPM_ALG_SHA256,
    attributes: int = AK_ATTRIBUTES,
    name_alg: int = alg.TPM_ALG_SHA256,
) -> bytes:
    numbers = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    scheme_bytes = struct.pack(">H", scheme)
    if scheme != alg.TPM_ALG_NULL:
        scheme_bytes += struct.pack(">H", scheme_hash)
    return (
        struct.pack(">HHI", alg.TPM_ALG_ECC, name_alg, attributes)
        + tpm2b(b"")
        + struct.pack(">H", alg.TPM_ALG_NULL)
        + scheme_bytes
        + struct.pack(">HH", ECC_CURVE_IDS[key.curve.name], alg.TPM_ALG_NULL)
        + tpm2b(numbers.x.to_bytes(size, "big"))
        + tpm2b(numbers.y.to_bytes(size, "big"))
    )


def pcr_select_bytes(selections: list[tuple[int, list[int]]]) -> bytes:
    out = struct.pack(">I", len(selections))
    for bank, indices in selections:
        bitmap = bytearray(3)
        for i in indices:
            bitmap[i // 8] |= 1 << (i % 8)
        out += struct.pack(">HB", bank, len(bitmap)) + bytes(bitmap)
    return out


def attest_bytes(
    extra_data: bytes,
    selections: list[tuple[int, list[int]]],
    pcr_digest: bytes,
    *,
    magic: int = 0xFF544347,
    att_type: int = 0x8018,
    safe: int = 1,
) -> bytes:
    return (
        struct.pack(">IH", magic, att_type)
        + tpm2b(b"\x00\x0b" + bytes(32))  # qualifiedSigner
        + tpm2b(extra_data)
        + struct.pack(">QIIB", 12345, 1, 2, safe)  # clockInfo
        + struct.pack(">Q", 0x2016051100162800)  # firmwareVersion
        + pcr_select_bytes(selections)
        + tpm2b(pcr_digest)
    )


def rsa_signature_bytes(sig_alg: int, hash_alg: int, sig: bytes) -> bytes:
    return struct.pack(">HH", sig_alg, hash_alg) + tpm2b(sig)


def ecdsa_signature_bytes(hash_alg: int, r: int, s: int, size: int = 32) -> bytes:
    return (
        struct.pack(">HH", alg.TPM_ALG_ECDSA, hash_alg)
        + tpm2b(r.to_bytes(size, "big"))
        + tpm2b(s.to_bytes(size, "big"))
    )


def load_aws(vectors: Path) -> AttestationDocument:
    return AttestationDocument.from_json((vectors / AWS_DOC).read_bytes())


# --- TPMT_PUBLIC -----------------------------------------------------------------------------------


def test_aws_ak_public(vectors: Path) -> None:
    """attdoc-aws.txt akPub: RSA-2048, RSASSA-SHA256, name 000b5d50b949… (MANIFEST "AK")."""
    ak = parse_tpmt_public(load_aws(vectors).attestation.ak_pub)
    assert ak.type == alg.TPM_ALG_RSA
    assert ak.name_alg == alg.TPM_ALG_SHA256
    assert ak.scheme.scheme == alg.TPM_ALG_RSASSA
    assert ak.scheme.hash_alg == alg.TPM_ALG_SHA256
    assert ak.parameters.symmetric.algorithm == alg.TPM_ALG_NULL
    assert ak.auth_policy == b""
    assert ak.is_restricted_signing
    assert ak.name().hex() == AWS_AK_NAME
    key = ak.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048
    assert key.public_numbers().e == 65537  # exponent field 0 means 65537


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()], ids=lambda c: c.name)
def test_ecc_public_round_trip(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve).public_key()
    raw = ecc_public_bytes(key)
    ak = parse_tpmt_public(raw)
    assert ak.type == alg.TPM_ALG_ECC
    assert ak.scheme.scheme == alg.TPM_ALG_ECDSA
    assert public_keys_equal(ak, key)
    assert ak.name() == b"\x00\x0b" + hashlib.sha256(raw).digest()
    assert ak.is_restricted_signing


def test_rsa_exponent_and_name_alg() -> None:
    key = rsa.generate_private_key(public_exponent=3, key_size=2048).public_key()
    ak = parse_tpmt_public(rsa_public_bytes(key, exponent=None, name_alg=alg.TPM_ALG_SHA384))
    pub = ak.public_key()
    assert isinstance(pub, rsa.RSAPublicKey) and pub.public_numbers().e == 3
    assert ak.name()[:2] == b"\x00\x0c" and len(ak.name()) == 2 + 48


def test_public_keys_equal_ignores_attributes() -> None:
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    a = parse_tpmt_public(rsa_public_bytes(priv.public_key()))
    b = parse_tpmt_public(rsa_public_bytes(priv.public_key(), attributes=0x00060072, scheme=alg.TPM_ALG_NULL))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    ecc = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert a.name() != b.name()
    assert public_keys_equal(a, b)
    assert public_keys_equal(a, priv.public_key())
    assert not public_keys_equal(a, other)
    assert not public_keys_equal(a, ecc)
    assert not b.is_restricted_signing  # decrypt set


def _rsa_key() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


def test_public_rejects_malformed() -> None:
    raw = rsa_public_bytes(_rsa_key())
    bad: dict[str, bytes] = {
        "trailing byte": raw + b"\x00",
        "truncated": raw[:-1],
        "empty": b"",
        "keyedhash type": struct.pack(">H", 0x0008) + raw[2:],
        "NULL nameAlg": raw[:2] + struct.pack(">H", alg.TPM_ALG_NULL) + raw[4:],
        "keyBits 2040": raw.replace(struct.pack(">HI", 2048, 0), struct.pack(">HI", 2040, 0), 1),
        "oversized": raw + bytes(4096),
        "unknown scheme": raw.replace(struct.pack(">HH", 0x0014, 0x000B), struct.pack(">HH", 0x0099, 0x000B), 1),
    }
    for what, data in bad.items():
        with pytest.raises(MalformedEvidence):
            parse_tpmt_public(data)
        assert what


def test_ecc_public_rejects_bad_point_and_curve() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = bytearray(ecc_public_bytes(key))
    off_curve = bytes(raw[:-1]) + bytes([raw[-1] ^ 1])
    with pytest.raises(MalformedEvidence, match="not a valid public key"):
        parse_tpmt_public(off_curve)
    bn_curve = bytes(raw).replace(struct.pack(">HH", 0x0003, 0x0010), struct.pack(">HH", 0x0010, 0x0010), 1)
    with pytest.raises(MalformedEvidence, match="curveID"):
        parse_tpmt_public(bn_curve)


# --- TPMS_ATTEST -----------------------------------------------------------------------------------


def test_aws_quotes_attest(vectors: Path) -> None:
    """attdoc-aws.txt quotes: TPM_GENERATED_VALUE, quote type, extraData b3c5249a…, PCRs 0–23 per bank."""
    for quote in load_aws(vectors).attestation.quotes:
        attest = parse_tpms_attest(quote.quote)
        assert attest.magic == 0xFF544347
        assert attest.type == 0x8018
        assert attest.extra_data.hex() == AWS_EXTRA_DATA
        assert attest.pcr_select == (PcrSelection(quote.pcrs.hash, b"\xff\xff\xff"),)
        assert attest.pcr_select[0].indices == tuple(range(24))
        assert len(attest.pcr_digest) == 32  # hashed with the signing hash SHA-256 in every bank
        assert attest.clock_info.safe
        assert attest.raw == quote.quote


def test_pcr_selection_bit_order() -> None:
    assert PcrSelection(alg.TPM_ALG_SHA256, b"\x81\x00\x40").indices == (0, 7, 22)
    assert PcrSelection(alg.TPM_ALG_SHA256, b"").indices == ()


def test_attest_rejects_malformed() -> None:
    good = attest_bytes(b"nonce", [(alg.TPM_ALG_SHA256, [0, 1])], bytes(32))
    parse_tpms_attest(good)
    bad = {
        "trailing": good + b"\x00",
        "truncated": good[:-3],
        "certify type": attest_bytes(b"n", [], bytes(32), att_type=0x8017),
        "safe=2": attest_bytes(b"n", [], bytes(32), safe=2),
        "extraData > 64": attest_bytes(bytes(65), [], bytes(32)),
        "pcrDigest > 64": attest_bytes(b"n", [], bytes(65)),
        "too many banks": attest_bytes(b"n", [(alg.TPM_ALG_SHA256, [0])] * 17, bytes(32)),
        "oversized": good + bytes(2048),
    }
    for what, data in bad.items():
        with pytest.raises(MalformedEvidence):
            parse_tpms_attest(data)
        assert what
    wide = good.replace(b"\x00\x0b\x03\x03\x00\x00", b"\x00\x0b\x05\x03\x00\x00\x00\x00", 1)
    with pytest.raises(MalformedEvidence, match="sizeofSelect"):
        parse_tpms_attest(wide)


# --- TPMT_SIGNATURE --------------------------------------------------------------------------------


def test_aws_signatures(vectors: Path) -> None:
    """attdoc-aws.txt rawSig: RSASSA-SHA256 with a 256-byte signature (MANIFEST "AK" scheme)."""
    for quote in load_aws(vectors).attestation.quotes:
        sig = parse_tpmt_signature(quote.raw_sig)
        assert (sig.sig_alg, sig.hash_alg) == (alg.TPM_ALG_RSASSA, alg.TPM_ALG_SHA256)
        assert len(sig.rsa_sig) == 256


def test_signature_forms() -> None:
    pss = parse_tpmt_signature(rsa_signature_bytes(alg.TPM_ALG_RSAPSS, alg.TPM_ALG_SHA384, b"\x01" * 256))
    assert (pss.sig_alg, pss.hash_alg, pss.rsa_sig) == (alg.TPM_ALG_RSAPSS, alg.TPM_ALG_SHA384, b"\x01" * 256)
    ecdsa = parse_tpmt_signature(ecdsa_signature_bytes(alg.TPM_ALG_SHA256, 5, 7))
    assert int.from_bytes(ecdsa.ecdsa_r, "big") == 5 and int.from_bytes(ecdsa.ecdsa_s, "big") == 7


def test_signature_rejects_malformed() -> None:
    good = rsa_signature_bytes(alg.TPM_ALG_RSASSA, alg.TPM_ALG_SHA256, bytes(256))
    bad = {
        "trailing": good + b"\x00",
        "truncated": good[:-1],
        "HMAC": struct.pack(">HH", 0x0005, 0x000B) + bytes(32),
        "NULL": struct.pack(">H", alg.TPM_ALG_NULL),
        "rsa sig > 512": rsa_signature_bytes(alg.TPM_ALG_RSASSA, alg.TPM_ALG_SHA256, bytes(513)),
        "ecdsa missing s": ecdsa_signature_bytes(alg.TPM_ALG_SHA256, 1, 1)[:-34],
        "empty": b"",
    }
    for what, data in bad.items():
        with pytest.raises(MalformedEvidence):
            parse_tpmt_signature(data)
        assert what


def test_tpm_public_is_a_value() -> None:
    raw = rsa_public_bytes(_rsa_key())
    assert parse_tpmt_public(raw) == parse_tpmt_public(raw)
    assert isinstance(parse_tpmt_public(raw), TpmPublic)


# --- TPMT_PUBLIC: the struct fast path answers only as the field-by-field reader does ---------


def _public_seeds() -> list[bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    seeds = [
        rsa_public_bytes(key),
        rsa_public_bytes(key, scheme=alg.TPM_ALG_NULL),
        rsa_public_bytes(key, scheme=alg.TPM_ALG_RSAPSS, scheme_hash=alg.TPM_ALG_SHA384, exponent=None),
        rsa_public_bytes(key, scheme=alg.TPM_ALG_OAEP, name_alg=alg.TPM_ALG_SHA1),
    ]
    with_policy = bytearray(seeds[0])
    with_policy[8:10] = struct.pack(">H", 32)
    seeds.append(bytes(with_policy[:10]) + bytes(range(32)) + bytes(with_policy[10:]))
    return seeds


_PUBLIC_SEEDS = _public_seeds()


@pytest.mark.parametrize("data", _PUBLIC_SEEDS, ids=range(len(_PUBLIC_SEEDS)))
def test_rsa_public_well_formed_takes_the_fast_path(data: bytes) -> None:
    fast = tpm_public._rsa_fast(data)
    assert fast is not None
    assert fast == tpm_public._public_checked(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(_PUBLIC_SEEDS), EDITS, st.booleans())
def test_rsa_public_fast_path_agrees_with_the_reader(
    data: bytes, edits: list[tuple[int, int, str]], tail: bool
) -> None:
    edited = apply_edits(data, edits, from_end=tail)  # edits near either end
    checked = outcome(tpm_public._public_checked, edited)
    fast = tpm_public._rsa_fast(edited)
    if fast is not None:
        assert fast == checked
    parsed = outcome(parse_tpmt_public, edited)
    if isinstance(checked, str):
        assert parsed == checked  # refused, with the reader's words
    elif isinstance(parsed, TpmPublic):  # (else the key material itself was refused)
        assert (
            parsed.type,
            parsed.name_alg,
            parsed.object_attributes,
            parsed.auth_policy,
            parsed.parameters,
        ) == checked


def _tweaked_publics() -> list[bytes]:
    """Well-laid-out TPMT_PUBLICs off the fast path's shape: each breaks a rule (the reader refuses
    them), except the last, a storage-style symmetric definition the reader reads."""
    null_scheme = _PUBLIC_SEEDS[1]  # header 10 bytes, symmetric, scheme, keyBits, exponent, modulus
    modulus = null_scheme[20:]
    return [
        null_scheme[:8] + tpm2b(bytes(65)) + null_scheme[10:],  # authPolicy longer than a digest
        null_scheme[:12] + struct.pack(">H", 0x0099) + null_scheme[14:],  # an unknown scheme
        null_scheme[:12] + struct.pack(">H", alg.TPM_ALG_ECDSA) + null_scheme[14:],  # an ECC scheme
        null_scheme[:14] + struct.pack(">HIH", 2056, 0, 257) + modulus + b"\x01",  # keyBits not allowed
        null_scheme[:14] + struct.pack(">HIH", 1024, 0, 256) + modulus,  # modulus of another size
        null_scheme[:2] + struct.pack(">H", 0x0099) + null_scheme[4:],  # nameAlg not a hash
        struct.pack(">H", alg.TPM_ALG_ECC) + null_scheme[2:],
        null_scheme[:10] + struct.pack(">HHH", alg.TPM_ALG_AES, 128, 0x0043) + null_scheme[12:],
    ]


@pytest.mark.parametrize("data", _tweaked_publics(), ids=range(8))
def test_rsa_public_fast_path_leaves_every_broken_rule_to_the_reader(data: bytes) -> None:
    assert tpm_public._rsa_fast(data) is None
    parsed = outcome(parse_tpmt_public, data)
    if data[10:12] == struct.pack(">H", alg.TPM_ALG_AES):  # the storage-style one: read, not refused
        assert isinstance(parsed, TpmPublic)
        assert parsed.parameters.symmetric == SymDef(alg.TPM_ALG_AES, 128, 0x0043)
    else:
        assert isinstance(parsed, str)
        assert parsed == outcome(tpm_public._public_checked, data)
