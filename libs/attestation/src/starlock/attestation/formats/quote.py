"""A bare TPM2_Quote check: TPMS_ATTEST + TPMT_SIGNATURE + the AK public key + the nonce.

For quotes that come without a go-tpm-tools attestation around them (``tpm2_quote`` output,
Trustee's ``tpm_quote``): the signature is verified under the AK, the structure must be a quote
made by a TPM (magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE), its extraData must be the
nonce, and the PCR selection and digest are returned (the PCR values themselves are not part of a
bare quote, so only their digest is attested).
"""

from __future__ import annotations

import hmac

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from starlock.attestation.errors import MalformedEvidence, NonceMismatch, SignatureError
from starlock.attestation.tpm import (
    AkPublicKey,
    TpmPublic,
    TpmsAttest,
    TpmtSignature,
    parse_tpms_attest,
    parse_tpmt_public,
    parse_tpmt_signature,
)
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm.quote import check_signature_scheme, verify_signature

__all__ = ["MAX_AK_INPUT", "VerifiedBareQuote", "parse_ak_public", "verify_bare_quote"]

MAX_AK_INPUT = 64 * 1024
TPM_GENERATED_VALUE = 0xFF544347


@attrs.frozen
class VerifiedBareQuote:
    attest: TpmsAttest
    signature: TpmtSignature

    def selection(self) -> dict[str, list[int]]:
        return {alg.alg_name(s.hash_alg): list(s.indices) for s in self.attest.pcr_select}


def parse_ak_public(data: bytes) -> TpmPublic | AkPublicKey:
    """An AK public key: a PEM ``PUBLIC KEY`` or ``CERTIFICATE`` (its key), or a binary TPMT_PUBLIC
    (optionally as TPM2B_PUBLIC, with its 2-byte size). RSA or ECDSA keys only."""
    if len(data) > MAX_AK_INPUT:
        raise MalformedEvidence(f"AK: {len(data)} bytes, at most {MAX_AK_INPUT}")
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        key: object
        try:
            if stripped.startswith(b"-----BEGIN CERTIFICATE-----"):
                key = x509.load_pem_x509_certificate(stripped).public_key()
            else:
                key = serialization.load_pem_public_key(stripped)
        except ValueError as exc:
            raise MalformedEvidence(f"AK: not a PEM public key or certificate: {exc}") from None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise MalformedEvidence(f"AK: a {type(key).__name__}, expected an RSA or ECC key")
        return key
    try:
        return parse_tpmt_public(data)
    except MalformedEvidence as first:
        if len(data) >= 2 and int.from_bytes(data[:2], "big") == len(data) - 2:
            return parse_tpmt_public(data[2:])  # TPM2B_PUBLIC
        raise first


def verify_bare_quote(
    quote: bytes, signature: bytes, ak: TpmPublic | AkPublicKey, nonce: bytes | None
) -> VerifiedBareQuote:
    """Verify ``quote`` (TPMS_ATTEST) and ``signature`` (TPMT_SIGNATURE) under ``ak``; with a
    ``nonce``, extraData must equal it. Raises :class:`MalformedEvidence` for structures that do
    not parse, :class:`SignatureError` / :class:`NonceMismatch` for evidence that does not verify."""
    attest = parse_tpms_attest(quote)
    sig = parse_tpmt_signature(signature)
    key = ak.public_key() if isinstance(ak, TpmPublic) else ak
    # The rules of tpm.quote: SHA-2 signatures only; RSASSA or RSAPSS for RSA, ECDSA for ECC.
    check_signature_scheme(alg.TPM_ALG_RSA if isinstance(key, rsa.RSAPublicKey) else alg.TPM_ALG_ECC, sig)
    verify_signature(key, sig, quote)
    if attest.magic != TPM_GENERATED_VALUE:
        raise SignatureError(
            f"TPMS_ATTEST.magic: expected TPM_GENERATED_VALUE 0x{TPM_GENERATED_VALUE:08x}, got 0x{attest.magic:08x}"
        )
    if nonce is not None and not hmac.compare_digest(attest.extra_data, nonce):
        raise NonceMismatch(f"TPMS_ATTEST.extraData: expected {nonce.hex()}, got {attest.extra_data.hex()}")
    return VerifiedBareQuote(attest, sig)
