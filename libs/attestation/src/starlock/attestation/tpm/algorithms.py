"""TPM 2.0 algorithm identifiers (TCG TPM 2.0 Part 2, TPM_ALG_ID and TPM_ECC_CURVE) and hash helpers."""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from starlock.attestation.errors import MalformedEvidence

__all__ = [
    "ECC_CURVES",
    "HASH_DIGEST_SIZES",
    "TPM_ALG_AES",
    "TPM_ALG_CAMELLIA",
    "TPM_ALG_ECC",
    "TPM_ALG_ECDAA",
    "TPM_ALG_ECDH",
    "TPM_ALG_ECDSA",
    "TPM_ALG_ECMQV",
    "TPM_ALG_ECSCHNORR",
    "TPM_ALG_KDF1_SP800_56A",
    "TPM_ALG_KDF1_SP800_108",
    "TPM_ALG_KDF2",
    "TPM_ALG_MGF1",
    "TPM_ALG_NULL",
    "TPM_ALG_OAEP",
    "TPM_ALG_RSA",
    "TPM_ALG_RSAES",
    "TPM_ALG_RSAPSS",
    "TPM_ALG_RSASSA",
    "TPM_ALG_SHA1",
    "TPM_ALG_SHA256",
    "TPM_ALG_SHA384",
    "TPM_ALG_SHA512",
    "TPM_ALG_SM2",
    "TPM_ALG_SM3_256",
    "TPM_ALG_SM4",
    "alg_name",
    "digest",
    "hash_for",
]

TPM_ALG_RSA = 0x0001
TPM_ALG_SHA1 = 0x0004
TPM_ALG_AES = 0x0006
TPM_ALG_MGF1 = 0x0007
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_NULL = 0x0010
TPM_ALG_SM3_256 = 0x0012
TPM_ALG_SM4 = 0x0013
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAES = 0x0015
TPM_ALG_RSAPSS = 0x0016
TPM_ALG_OAEP = 0x0017
TPM_ALG_ECDSA = 0x0018
TPM_ALG_ECDH = 0x0019
TPM_ALG_ECDAA = 0x001A
TPM_ALG_SM2 = 0x001B
TPM_ALG_ECSCHNORR = 0x001C
TPM_ALG_ECMQV = 0x001D
TPM_ALG_KDF1_SP800_56A = 0x0020
TPM_ALG_KDF2 = 0x0021
TPM_ALG_KDF1_SP800_108 = 0x0022
TPM_ALG_ECC = 0x0023
TPM_ALG_CAMELLIA = 0x0026

#: Digest size of every hash algorithm a TPM may use for names, PCR banks and signatures.
HASH_DIGEST_SIZES: Mapping[int, int] = {
    TPM_ALG_SHA1: 20,
    TPM_ALG_SHA256: 32,
    TPM_ALG_SHA384: 48,
    TPM_ALG_SHA512: 64,
    TPM_ALG_SM3_256: 32,
}

_HASHES: Mapping[int, type[hashes.HashAlgorithm]] = {
    TPM_ALG_SHA1: hashes.SHA1,
    TPM_ALG_SHA256: hashes.SHA256,
    TPM_ALG_SHA384: hashes.SHA384,
    TPM_ALG_SHA512: hashes.SHA512,
    TPM_ALG_SM3_256: hashes.SM3,
}

#: TPM_ECC_CURVE → curve class, for the curves cryptography implements (NIST P-192..P-521).
ECC_CURVES: Mapping[int, type[ec.EllipticCurve]] = {
    0x0001: ec.SECP192R1,
    0x0002: ec.SECP224R1,
    0x0003: ec.SECP256R1,
    0x0004: ec.SECP384R1,
    0x0005: ec.SECP521R1,
}

_NAMES: Mapping[int, str] = {
    TPM_ALG_RSA: "RSA",
    TPM_ALG_SHA1: "SHA1",
    TPM_ALG_AES: "AES",
    TPM_ALG_SHA256: "SHA256",
    TPM_ALG_SHA384: "SHA384",
    TPM_ALG_SHA512: "SHA512",
    TPM_ALG_NULL: "NULL",
    TPM_ALG_SM3_256: "SM3_256",
    TPM_ALG_RSASSA: "RSASSA",
    TPM_ALG_RSAES: "RSAES",
    TPM_ALG_RSAPSS: "RSAPSS",
    TPM_ALG_OAEP: "OAEP",
    TPM_ALG_ECDSA: "ECDSA",
    TPM_ALG_ECDH: "ECDH",
    TPM_ALG_ECDAA: "ECDAA",
    TPM_ALG_SM2: "SM2",
    TPM_ALG_ECSCHNORR: "ECSCHNORR",
    TPM_ALG_ECC: "ECC",
}


def alg_name(alg: int) -> str:
    """A readable name for error messages: ``SHA256`` or ``0x1234``."""
    name = _NAMES.get(alg)
    return name if name is not None else f"0x{alg:04x}"


def hash_for(alg: int, what: str) -> hashes.HashAlgorithm:
    """The cryptography hash for a TPM_ALG_ID; ``what`` names the field in the error."""
    cls = _HASHES.get(alg)
    if cls is None:
        raise MalformedEvidence(f"{what}: {alg_name(alg)} is not a supported hash algorithm")
    return cls()


def digest(alg: int, data: bytes, what: str) -> bytes:
    """H_alg(data)."""
    h = hashes.Hash(hash_for(alg, what))
    h.update(data)
    return h.finalize()
