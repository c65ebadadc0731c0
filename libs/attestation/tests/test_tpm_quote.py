"""verify_quote / verify_attestation on synthetic quotes (RSASSA, RSA-PSS and ECDSA AKs).

Keys are generated with cryptography; TPMT_PUBLIC / TPMS_ATTEST / TPMT_SIGNATURE bytes are built
by the helpers of test_tpm_structures.py. The real-vector quotes are in test_tpm_vectors.py.
"""

from __future__ import annotations

import functools
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from test_tpm_eventlog import agile_log, measured
from test_tpm_structures import (
    attest_bytes,
    ecc_public_bytes,
    ecdsa_signature_bytes,
    rsa_public_bytes,
    rsa_signature_bytes,
)

from starlock.attestation.document import Attestation, PCRs, Quote
from starlock.attestation.errors import (
    EventLogMismatch,
    MalformedEvidence,
    NonceMismatch,
    PcrDigestMismatch,
    SignatureError,
    UntrustedKey,
)
from starlock.attestation.tpm import TpmPublic, parse_tpmt_public, replay, verify_attestation, verify_quote
from starlock.attestation.tpm import algorithms as alg

SHA1, SHA256, SHA384, SHA512 = alg.TPM_ALG_SHA1, alg.TPM_ALG_SHA256, alg.TPM_ALG_SHA384, alg.TPM_ALG_SHA512
RSASSA, RSAPSS, ECDSA, NULL = alg.TPM_ALG_RSASSA, alg.TPM_ALG_RSAPSS, alg.TPM_ALG_ECDSA, alg.TPM_ALG_NULL
_HASHES = {SHA1: hashes.SHA1(), SHA256: hashes.SHA256(), SHA384: hashes.SHA384(), SHA512: hashes.SHA512()}
_HASHLIB = {SHA1: hashlib.sha1, SHA256: hashlib.sha256, SHA384: hashlib.sha384, SHA512: hashlib.sha512}
NONCE = b"\x42" * 32

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@functools.cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ecc_key(curve_name: str = "secp256r1", n: int = 0) -> ec.EllipticCurvePrivateKey:
    curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}[curve_name]
    return ec.generate_private_key(curve)


def ak_for(key: PrivateKey, scheme: int, scheme_hash: int = SHA256) -> TpmPublic:
    if isinstance(key, rsa.RSAPrivateKey):
        return parse_tpmt_public(rsa_public_bytes(key.public_key(), scheme=scheme, scheme_hash=scheme_hash))
    return parse_tpmt_public(ecc_public_bytes(key.public_key(), scheme=scheme, scheme_hash=scheme_hash))


def sign(key: PrivateKey, message: bytes, sig_alg: int, hash_alg: int, *, salt: int | None = None) -> bytes:
    h = _HASHES[hash_alg]
    if isinstance(key, rsa.RSAPrivateKey):
        if sig_alg == RSAPSS:
            pss = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size if salt is None else salt)
            return rsa_signature_bytes(sig_alg, hash_alg, key.sign(message, pss, h))
        return rsa_signature_bytes(sig_alg, hash_alg, key.sign(message, padding.PKCS1v15(), h))
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(h)))
    return ecdsa_signature_bytes(hash_alg, r, s, (key.curve.key_size + 7) // 8)


def pcr_values(bank: int, indices: range | list[int] = range(24)) -> dict[int, bytes]:
    return {i: _HASHLIB[bank](bytes([i])).digest() for i in indices}


def make_quote(
    key: PrivateKey,
    bank: int = SHA256,
    *,
    sig_alg: int | None = None,
    sig_hash: int = SHA256,
    extra_data: bytes = NONCE,
    pcrs: dict[int, bytes] | None = None,
    selected: list[int] | None = None,
    digest_hash: int | None = None,
    magic: int = 0xFF544347,
    salt: int | None = None,
) -> Quote:
    if sig_alg is None:
        sig_alg = RSASSA if isinstance(key, rsa.RSAPrivateKey) else ECDSA
    values = pcr_values(bank) if pcrs is None else pcrs
    indices = sorted(values) if selected is None else selected
    pcr_digest = _HASHLIB[digest_hash or sig_hash](b"".join(values[i] for i in indices)).digest()
    attest = attest_bytes(extra_data, [(bank, indices)], pcr_digest, magic=magic)
    return Quote(quote=attest, raw_sig=sign(key, attest, sig_alg, sig_hash, salt=salt), pcrs=PCRs(bank, values))


# --- signature schemes -----------------------------------------------------------------------------


@pytest.mark.parametrize("sig_hash", [SHA256, SHA384, SHA512])
def test_rsassa(sig_hash: int) -> None:
    key = rsa_key()
    verified = verify_quote(ak_for(key, RSASSA, sig_hash), make_quote(key, sig_hash=sig_hash), NONCE)
    assert verified.signature.sig_alg == RSASSA
    assert verified.attest.extra_data == NONCE
    assert verified.pcrs.hash == SHA256


@pytest.mark.parametrize("salt", [None, padding.PSS.MAX_LENGTH], ids=["salt=digest", "salt=max"])
@pytest.mark.parametrize("sig_hash", [SHA256, SHA384])
def test_rsapss(sig_hash: int, salt: int | None) -> None:
    """RSA-PSS is accepted (go-tpm-tools accepts only RSASSA) with both TPM salt lengths."""
    key = rsa_key()
    quote = make_quote(key, sig_alg=RSAPSS, sig_hash=sig_hash, salt=salt)
    assert verify_quote(ak_for(key, RSAPSS, sig_hash), quote, NONCE).signature.sig_alg == RSAPSS


def test_rsapss_other_salt_length_rejected() -> None:
    key = rsa_key()
    quote = make_quote(key, sig_alg=RSAPSS, salt=0)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_quote(ak_for(key, RSAPSS), quote, NONCE)


@pytest.mark.parametrize(("curve", "sig_hash"), [("secp256r1", SHA256), ("secp384r1", SHA384), ("secp256r1", SHA512)])
def test_ecdsa(curve: str, sig_hash: int) -> None:
    key = ecc_key(curve)
    quote = make_quote(key, SHA384, sig_hash=sig_hash)
    verified = verify_quote(ak_for(key, ECDSA, sig_hash), quote, NONCE)
    assert verified.signature.sig_alg == ECDSA
    assert len(verified.attest.pcr_digest) == _HASHES[sig_hash].digest_size


def test_null_scheme_ak_accepts_any_scheme_of_its_type() -> None:
    key = rsa_key()
    ak = ak_for(key, NULL)
    verify_quote(ak, make_quote(key, sig_alg=RSASSA), NONCE)
    verify_quote(ak, make_quote(key, sig_alg=RSAPSS, sig_hash=SHA512), NONCE)
    eck = ecc_key()
    verify_quote(ak_for(eck, NULL), make_quote(eck, sig_hash=SHA384), NONCE)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("rsassa ak, pss sig", "differs from the AK's scheme"),
        ("rsassa-sha256 ak, sha384 sig", "differs from the AK's scheme"),
        ("ecdsa-sha256 ak, sha384 sig", "differs from the AK's scheme"),
        ("ecc ak, rsa sig", "cannot be made by a ECC AK"),
        ("rsa ak, ecdsa sig", "cannot be made by a RSA AK"),
        ("sha1 signature", "SHA1 is not allowed"),
        ("wrong key", "does not verify"),
    ],
)
def test_scheme_mismatches_rejected(case: str, match: str) -> None:
    key, eck = rsa_key(), ecc_key()
    quotes: dict[str, tuple[TpmPublic, Quote]] = {
        "rsassa ak, pss sig": (ak_for(key, RSASSA), make_quote(key, sig_alg=RSAPSS)),
        "rsassa-sha256 ak, sha384 sig": (ak_for(key, RSASSA), make_quote(key, sig_hash=SHA384)),
        "ecdsa-sha256 ak, sha384 sig": (ak_for(eck, ECDSA), make_quote(eck, sig_hash=SHA384)),
        "ecc ak, rsa sig": (ak_for(eck, NULL), make_quote(key)),
        "rsa ak, ecdsa sig": (ak_for(key, NULL), make_quote(eck)),
        "sha1 signature": (ak_for(key, NULL), make_quote(key, sig_hash=SHA1)),
        "wrong key": (ak_for(rsa_key(1), RSASSA), make_quote(key)),
    }
    ak, quote = quotes[case]
    with pytest.raises(SignatureError, match=match):
        verify_quote(ak, quote, NONCE)


def test_ecdsa_wrong_key_and_zero_signature() -> None:
    eck = ecc_key()
    quote = make_quote(eck)
    with pytest.raises(SignatureError):
        verify_quote(ak_for(ecc_key("secp256r1", 1), ECDSA), quote, NONCE)
    zero = Quote(quote.quote, ecdsa_signature_bytes(SHA256, 0, 0), quote.pcrs)
    with pytest.raises(SignatureError):
        verify_quote(ak_for(eck, ECDSA), zero, NONCE)


# --- TPMS_ATTEST checks ----------------------------------------------------------------------------


def test_magic_checked_after_signature() -> None:
    key = rsa_key()
    with pytest.raises(SignatureError, match="TPM_GENERATED_VALUE"):
        verify_quote(ak_for(key, RSASSA), make_quote(key, magic=0x12345678), NONCE)


def test_nonce_mismatch_names_both_values() -> None:
    key = rsa_key()
    with pytest.raises(NonceMismatch) as err:
        verify_quote(ak_for(key, RSASSA), make_quote(key), b"\x01" * 32)
    assert f"expected {'01' * 32}, got {NONCE.hex()}" in str(err.value)


# extraData must equal the expected qualifying data exactly: not a prefix of it, not extended by it.
_EXTRA_MISMATCHES = [
    (NONCE, b""),  # expected empty
    (NONCE, NONCE[:-1]),  # expected a truncation of the quoted value
    (NONCE, NONCE[:1]),  # expected a one-byte prefix
    (NONCE, NONCE + b"\x00"),  # expected the quoted value extended
    (b"", NONCE),  # quoted empty
    (NONCE[:-1], NONCE),  # quoted a truncation of the expected value
    (NONCE[:16], NONCE),  # quoted a prefix
    (NONCE + b"\x42", NONCE),  # quoted the expected value extended
    (b"\x00" + NONCE[1:], NONCE),  # same length, first byte differs
]


@pytest.mark.parametrize(
    ("quoted", "expected"),
    _EXTRA_MISMATCHES,
    ids=[
        "expected-empty",
        "expected-truncated",
        "expected-1-byte-prefix",
        "expected-extended",
        "quoted-empty",
        "quoted-truncated",
        "quoted-prefix",
        "quoted-extended",
        "first-byte",
    ],
)
def test_extra_data_must_match_exactly(quoted: bytes, expected: bytes) -> None:
    key = rsa_key()
    quote = make_quote(key, extra_data=quoted)
    with pytest.raises(NonceMismatch) as err:
        verify_quote(ak_for(key, RSASSA), quote, expected)
    assert f"expected {expected.hex()}, got {quoted.hex()}" in str(err.value)
    with pytest.raises(NonceMismatch):
        verify_attestation(Attestation(ak_pub=ak_for(key, RSASSA).raw, quotes=(quote,)), expected, ak_for(key, RSASSA))
    # Control: the same quote verifies for exactly what it carries.
    assert verify_quote(ak_for(key, RSASSA), quote, quoted).attest.extra_data == quoted


def test_pcr_selection_must_match_supplied_pcrs() -> None:
    key = rsa_key()
    ak = ak_for(key, RSASSA)
    values = pcr_values(SHA256, range(8))
    with pytest.raises(PcrDigestMismatch, match="quote selects SHA256 PCRs"):
        verify_quote(ak, make_quote(key, pcrs=values, selected=list(range(7))), NONCE)
    other_bank = make_quote(key, SHA384)
    relabelled = Quote(other_bank.quote, other_bank.raw_sig, PCRs(SHA256, pcr_values(SHA256)))
    with pytest.raises(PcrDigestMismatch, match="one selection of the SHA256 bank"):
        verify_quote(ak, relabelled, NONCE)


def test_pcr_digest_uses_signing_hash() -> None:
    key = rsa_key()
    ak = ak_for(key, RSASSA)
    quote = make_quote(key, SHA512, digest_hash=SHA512)  # digest over the bank hash: wrong
    with pytest.raises(PcrDigestMismatch, match="pcrDigest"):
        verify_quote(ak, quote, NONCE)
    good = make_quote(key, SHA512)
    changed = dict(good.pcrs.pcrs) | {3: bytes(64)}
    with pytest.raises(PcrDigestMismatch, match="pcrDigest"):
        verify_quote(ak, Quote(good.quote, good.raw_sig, PCRs(SHA512, changed)), NONCE)


def test_malformed_signature_and_attest() -> None:
    key = rsa_key()
    ak = ak_for(key, RSASSA)
    quote = make_quote(key)
    with pytest.raises(MalformedEvidence):
        verify_quote(ak, Quote(quote.quote, quote.raw_sig + b"\x00", quote.pcrs), NONCE)
    with pytest.raises(SignatureError):  # a truncated TPMS_ATTEST no longer matches the signature
        verify_quote(ak, Quote(quote.quote[:-1], quote.raw_sig, quote.pcrs), NONCE)


# --- verify_attestation ----------------------------------------------------------------------------


def attestation(key: PrivateKey, quotes: list[Quote], event_log: bytes = b"") -> Attestation:
    pub = key.public_key()
    ak_pub = rsa_public_bytes(pub) if isinstance(pub, rsa.RSAPublicKey) else ecc_public_bytes(pub)
    return Attestation(ak_pub=ak_pub, quotes=tuple(quotes), event_log=event_log)


def test_prefers_sha512_and_replays_event_log() -> None:
    key = rsa_key()
    banks = (SHA256, SHA384, SHA512)
    log = agile_log(measured(0, b"a", banks), measured(4, b"b", banks), algs=banks)
    quotes = []
    for bank in (SHA256, SHA384, SHA512):
        values = pcr_values(bank) | replay(log, bank)
        quotes.append(make_quote(key, bank, pcrs=values))
    att = attestation(key, quotes, log)
    result = verify_attestation(att, NONCE, parse_tpmt_public(att.ak_pub))
    assert result.hash_alg == SHA512
    assert result.event_log is not None and sorted(result.event_log.pcrs) == [0, 4]
    assert result.ak_name == parse_tpmt_public(att.ak_pub).name()
    assert result.attest.extra_data == NONCE
    # A cryptography public key (e.g. from an AK certificate) is a valid trust anchor too.
    assert verify_attestation(att, NONCE, key.public_key()).hash_alg == SHA512


def test_falls_back_to_next_bank_and_reports_preferred_error() -> None:
    key = rsa_key()
    good256 = make_quote(key, SHA256)
    bad512 = make_quote(key, SHA512)
    bad512 = Quote(bad512.quote, make_quote(key, SHA512, extra_data=b"x").raw_sig, bad512.pcrs)
    bad384 = make_quote(key, SHA384, extra_data=b"other")
    att = attestation(key, [good256, bad384, bad512])
    assert verify_attestation(att, NONCE, key.public_key()).hash_alg == SHA256

    att_bad = attestation(key, [bad384, bad512])
    with pytest.raises(SignatureError) as err:  # the SHA-512 quote's error kind
        verify_attestation(att_bad, NONCE, key.public_key())
    assert "SHA512 quote:" in str(err.value) and "SHA384 quote:" in str(err.value)
    assert "extraData" in str(err.value)


def test_event_log_mismatch_makes_quote_fail() -> None:
    key = rsa_key()
    log = agile_log(measured(0, b"a", (SHA256,)), algs=(SHA256,))
    quote = make_quote(key, SHA256)  # PCR 0 is not the replayed value
    with pytest.raises(EventLogMismatch, match="PCRs 0"):
        verify_attestation(attestation(key, [quote], log), NONCE, key.public_key())


def test_sha1_quotes_only_when_allowed() -> None:
    key = rsa_key()
    att = attestation(key, [make_quote(key, SHA1)])
    with pytest.raises(MalformedEvidence, match="no quote over an allowed bank"):
        verify_attestation(att, NONCE, key.public_key())
    assert verify_attestation(att, NONCE, key.public_key(), allow_sha1=True).hash_alg == SHA1
    with pytest.raises(MalformedEvidence, match="banks present: none"):
        verify_attestation(attestation(key, []), NONCE, key.public_key())


def test_untrusted_ak() -> None:
    key = rsa_key()
    att = attestation(key, [make_quote(key)])
    with pytest.raises(UntrustedKey, match="not the trusted attestation key"):
        verify_attestation(att, NONCE, rsa_key(1).public_key())
    with pytest.raises(UntrustedKey):
        verify_attestation(att, NONCE, ecc_key().public_key())


def test_ecdsa_attestation() -> None:
    eck = ecc_key("secp384r1")
    att = attestation(eck, [make_quote(eck, SHA256, sig_hash=SHA256)])
    assert verify_attestation(att, NONCE, eck.public_key()).quote.signature.sig_alg == ECDSA
