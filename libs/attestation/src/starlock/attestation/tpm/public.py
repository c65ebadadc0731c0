"""TPMT_PUBLIC (TCG TPM 2.0 Part 2, 12.2.4) for RSA and ECC keys, and key comparison."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm._reader import Reader, check_size

__all__ = [
    "MAX_TPMT_PUBLIC_SIZE",
    "AkPublicKey",
    "EccParms",
    "RsaParms",
    "Scheme",
    "SymDef",
    "TpmPublic",
    "parse_tpmt_public",
    "public_keys_equal",
]

#: Upper bound for a serialised TPMT_PUBLIC (an RSA-4096 key is about 560 bytes).
MAX_TPMT_PUBLIC_SIZE = 2048
_MAX_DIGEST = 64  # sizeof(TPMU_HA)
_MAX_RSA_KEY_BYTES = 512  # RSA-4096
_MAX_ECC_KEY_BYTES = 128
_RSA_KEY_BITS = (1024, 2048, 3072, 4096)

# TPMA_OBJECT bits (Part 2, 8.3).
TPMA_OBJECT_FIXED_TPM = 1 << 1
TPMA_OBJECT_FIXED_PARENT = 1 << 4
TPMA_OBJECT_SENSITIVE_DATA_ORIGIN = 1 << 5
TPMA_OBJECT_RESTRICTED = 1 << 16
TPMA_OBJECT_DECRYPT = 1 << 17
TPMA_OBJECT_SIGN_ENCRYPT = 1 << 18

AkPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: hashlib constructors of the usual hash algorithms, cheaper per call than cryptography's hashes
#: (internal; SM3 and the rest go through :func:`algorithms.digest`).
HASHLIB_CONSTRUCTORS: Mapping[int, Callable[[bytes], hashlib._Hash]] = {
    alg.TPM_ALG_SHA1: hashlib.sha1,
    alg.TPM_ALG_SHA256: hashlib.sha256,
    alg.TPM_ALG_SHA384: hashlib.sha384,
    alg.TPM_ALG_SHA512: hashlib.sha512,
}

_RSA_SCHEMES_WITH_HASH = frozenset({alg.TPM_ALG_RSASSA, alg.TPM_ALG_RSAPSS, alg.TPM_ALG_OAEP})
_RSA_SCHEMES_WITHOUT_HASH = frozenset({alg.TPM_ALG_NULL, alg.TPM_ALG_RSAES})
_ECC_SCHEMES_WITH_HASH = frozenset(
    {alg.TPM_ALG_ECDSA, alg.TPM_ALG_ECDH, alg.TPM_ALG_ECSCHNORR, alg.TPM_ALG_SM2, alg.TPM_ALG_ECMQV}
)
_KDF_SCHEMES = frozenset({alg.TPM_ALG_MGF1, alg.TPM_ALG_KDF1_SP800_56A, alg.TPM_ALG_KDF2, alg.TPM_ALG_KDF1_SP800_108})
_NULL_ONLY = frozenset({alg.TPM_ALG_NULL})
_SYM_OBJECT_ALGS = frozenset({alg.TPM_ALG_AES, alg.TPM_ALG_SM4, alg.TPM_ALG_CAMELLIA})


@attrs.frozen
class SymDef:
    """TPMT_SYM_DEF_OBJECT: ``algorithm`` is TPM_ALG_NULL for signing keys (then bits/mode are 0)."""

    algorithm: int = alg.TPM_ALG_NULL
    key_bits: int = 0
    mode: int = 0


@attrs.frozen
class Scheme:
    """TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_KDF_SCHEME: ``hash_alg`` is TPM_ALG_NULL when absent."""

    scheme: int = alg.TPM_ALG_NULL
    hash_alg: int = alg.TPM_ALG_NULL
    count: int = 0  # ECDAA only


@attrs.frozen
class RsaParms:
    """TPMS_RSA_PARMS plus the modulus (``unique``); ``exponent`` is the raw field (0 = 65537)."""

    symmetric: SymDef
    scheme: Scheme
    key_bits: int
    exponent: int
    modulus: bytes

    @property
    def effective_exponent(self) -> int:
        return self.exponent or 65537


@attrs.frozen
class EccParms:
    """TPMS_ECC_PARMS plus the public point (``unique``)."""

    symmetric: SymDef
    scheme: Scheme
    curve_id: int
    kdf: Scheme
    x: bytes
    y: bytes


class _Derived:
    """Slots for values derived from a TpmPublic's fields, computed once (not attrs fields).

    ``_key`` and ``_name`` cache :meth:`TpmPublic.public_key` and :meth:`TpmPublic.name`;
    ``_wire`` is set only by :func:`parse_tpmt_public`, and vouches that ``parameters`` and the
    other fields are what ``raw`` encodes (a TpmPublic built by hand or with ``attrs.evolve``
    carries no such guarantee, and copies do not keep the slots).
    """

    __slots__ = ("_key", "_name", "_wire")


@attrs.frozen
class TpmPublic(_Derived):
    """A parsed TPMT_PUBLIC; ``raw`` is the exact wire bytes (what the Name is computed over)."""

    type: int
    name_alg: int
    object_attributes: int
    auth_policy: bytes
    parameters: RsaParms | EccParms
    raw: bytes = attrs.field(repr=False)

    @property
    def scheme(self) -> Scheme:
        return self.parameters.scheme

    @property
    def is_restricted_signing(self) -> bool:
        """restricted and sign set, decrypt clear: a key that only signs TPM-generated data."""
        attrs_ = self.object_attributes
        return (
            bool(attrs_ & TPMA_OBJECT_RESTRICTED)
            and bool(attrs_ & TPMA_OBJECT_SIGN_ENCRYPT)
            and not attrs_ & TPMA_OBJECT_DECRYPT
        )

    def name(self) -> bytes:
        """TPM Name: nameAlg (UINT16, big-endian) || H_nameAlg(TPMT_PUBLIC)."""
        cached: bytes | None = getattr(self, "_name", None)
        if cached is not None:
            return cached
        new = HASHLIB_CONSTRUCTORS.get(self.name_alg)
        digest = new(self.raw).digest() if new else alg.digest(self.name_alg, self.raw, "TPMT_PUBLIC.nameAlg")
        name = self.name_alg.to_bytes(2, "big") + digest
        object.__setattr__(self, "_name", name)  # the instance is frozen; this is a cache
        return name

    def public_key(self) -> AkPublicKey:
        """The key as a cryptography public key (validated when the structure was parsed)."""
        cached: AkPublicKey | None = getattr(self, "_key", None)
        if cached is not None:
            return cached
        key = _make_key(self.parameters)
        object.__setattr__(self, "_key", key)  # the instance is frozen; this is a cache
        return key


_Fields = tuple[int, int, int, bytes, RsaParms | EccParms]  # type, nameAlg, attributes, authPolicy, parameters


def parse_tpmt_public(data: bytes) -> TpmPublic:
    """Parse a TPMT_PUBLIC of an RSA or ECC key; trailing bytes are rejected."""
    check_size(data, "TPMT_PUBLIC", MAX_TPMT_PUBLIC_SIZE)
    data = bytes(data)
    key_type, name_alg, object_attributes, auth_policy, parameters = _rsa_fast(data) or _public_checked(data)
    key = _make_key(parameters)  # validate the key material now, so public_key() cannot fail later
    public = TpmPublic(key_type, name_alg, object_attributes, auth_policy, parameters, data)  # field order
    object.__setattr__(public, "_key", key)
    object.__setattr__(public, "_wire", True)
    return public


_PUBLIC_HEAD = struct.Struct(">HHIH")  # type, nameAlg, objectAttributes, authPolicy.size
_SYM_AND_SCHEME = struct.Struct(">HH")  # symmetric.algorithm (TPM_ALG_NULL), scheme.scheme
_U16 = struct.Struct(">H")
_RSA_TAIL = struct.Struct(">HIH")  # keyBits, exponent, unique.rsa.size


def _rsa_fast(data: bytes) -> _Fields | None:
    """The usual AK, an RSA signing key, with ``struct``; None on anything else (then
    :func:`_public_checked` reads it field by field and names what is wrong).

    Every slice is followed by an unpack at the offset after it, which raises ``struct.error`` if
    the input is shorter; so when all unpacks succeed, every slice was whole.
    """
    try:
        key_type, name_alg, attributes, policy_size = _PUBLIC_HEAD.unpack_from(data)
        pos = _PUBLIC_HEAD.size + policy_size
        auth_policy = data[_PUBLIC_HEAD.size : pos]
        symmetric, scheme_alg = _SYM_AND_SCHEME.unpack_from(data, pos)
        pos += _SYM_AND_SCHEME.size
        if scheme_alg in _RSA_SCHEMES_WITH_HASH:
            scheme = Scheme(scheme_alg, _U16.unpack_from(data, pos)[0])
            pos += _U16.size
        elif scheme_alg in _RSA_SCHEMES_WITHOUT_HASH:
            scheme = Scheme(scheme_alg)
        else:
            return None
        key_bits, exponent, modulus_size = _RSA_TAIL.unpack_from(data, pos)
    except struct.error:
        return None
    start = pos + _RSA_TAIL.size
    well_formed = (
        key_type == alg.TPM_ALG_RSA
        and name_alg in alg.HASH_DIGEST_SIZES
        and policy_size <= _MAX_DIGEST
        and symmetric == alg.TPM_ALG_NULL
        and key_bits in _RSA_KEY_BITS
        and modulus_size == key_bits // 8
        and start + modulus_size == len(data)
    )
    if not well_formed:
        return None
    return key_type, name_alg, attributes, auth_policy, RsaParms(SymDef(), scheme, key_bits, exponent, data[start:])


def _public_checked(data: bytes) -> _Fields:
    """Field by field with the bounded reader, whose errors name the field."""
    r = Reader(data, "TPMT_PUBLIC")
    key_type = r.u16("type")
    name_alg = r.u16("nameAlg")
    if name_alg not in alg.HASH_DIGEST_SIZES:
        raise MalformedEvidence(f"TPMT_PUBLIC.nameAlg: {alg.alg_name(name_alg)} is not a hash algorithm")
    object_attributes = r.u32("objectAttributes")
    auth_policy = r.tpm2b("authPolicy", _MAX_DIGEST)
    parameters: RsaParms | EccParms
    if key_type == alg.TPM_ALG_RSA:
        parameters = _parse_rsa(r)
    elif key_type == alg.TPM_ALG_ECC:
        parameters = _parse_ecc(r)
    else:
        raise MalformedEvidence(
            f"TPMT_PUBLIC.type: {alg.alg_name(key_type)} is not supported, expected RSA (0x0001) or ECC (0x0023)"
        )
    r.end()
    return key_type, name_alg, object_attributes, auth_policy, parameters


def is_parse_of(public: TpmPublic, data: bytes) -> bool:
    """True when ``public`` is what :func:`parse_tpmt_public` returned for exactly ``data`` (internal).

    Lets a caller that already holds the parsed AK skip parsing the same bytes again.
    """
    return bool(getattr(public, "_wire", False)) and public.raw == data


def public_keys_equal(a: TpmPublic | AkPublicKey, b: TpmPublic | AkPublicKey) -> bool:
    """True when both keys have the same key material (RSA n and e; EC curve and point).

    Attributes, schemes and nameAlg are not compared, as in go-tpm-tools ``PubKeysEqual``.
    """
    ka = a.public_key() if isinstance(a, TpmPublic) else a
    kb = b.public_key() if isinstance(b, TpmPublic) else b
    if isinstance(ka, rsa.RSAPublicKey) and isinstance(kb, rsa.RSAPublicKey):
        return ka.public_numbers() == kb.public_numbers()
    if isinstance(ka, ec.EllipticCurvePublicKey) and isinstance(kb, ec.EllipticCurvePublicKey):
        na, nb = ka.public_numbers(), kb.public_numbers()
        return na.curve.name == nb.curve.name and (na.x, na.y) == (nb.x, nb.y)
    return False


def _parse_symdef(r: Reader) -> SymDef:
    algorithm = r.u16("parameters.symmetric.algorithm")
    if algorithm == alg.TPM_ALG_NULL:
        return SymDef()
    if algorithm not in _SYM_OBJECT_ALGS:
        raise MalformedEvidence(f"TPMT_PUBLIC.parameters.symmetric: unknown algorithm {alg.alg_name(algorithm)}")
    return SymDef(algorithm, r.u16("parameters.symmetric.keyBits"), r.u16("parameters.symmetric.mode"))


def _parse_scheme(
    r: Reader, field: str, with_hash: frozenset[int], without_hash: frozenset[int], *, ecc: bool = False
) -> Scheme:
    scheme = r.u16(f"{field}.scheme")
    if scheme in without_hash:
        return Scheme(scheme)
    if ecc and scheme == alg.TPM_ALG_ECDAA:  # TPMS_SCHEME_ECDAA: hashAlg, count
        return Scheme(scheme, r.u16(f"{field}.hashAlg"), r.u16(f"{field}.count"))
    if scheme not in with_hash:
        raise MalformedEvidence(f"TPMT_PUBLIC.{field}: scheme {alg.alg_name(scheme)} is not valid here")
    return Scheme(scheme, r.u16(f"{field}.hashAlg"))


def _parse_rsa(r: Reader) -> RsaParms:
    symmetric = _parse_symdef(r)
    scheme = _parse_scheme(r, "parameters.scheme", _RSA_SCHEMES_WITH_HASH, _RSA_SCHEMES_WITHOUT_HASH)
    key_bits = r.u16("parameters.keyBits")
    exponent = r.u32("parameters.exponent")
    modulus = r.tpm2b("unique.rsa", _MAX_RSA_KEY_BYTES)
    if key_bits not in _RSA_KEY_BITS:
        raise MalformedEvidence(f"TPMT_PUBLIC.parameters.keyBits: {key_bits} is not one of {_RSA_KEY_BITS}")
    if len(modulus) != key_bits // 8:
        raise MalformedEvidence(
            f"TPMT_PUBLIC.unique.rsa: modulus is {len(modulus)} bytes, expected {key_bits // 8} for keyBits {key_bits}"
        )
    return RsaParms(symmetric, scheme, key_bits, exponent, modulus)


def _parse_ecc(r: Reader) -> EccParms:
    symmetric = _parse_symdef(r)
    scheme = _parse_scheme(r, "parameters.scheme", _ECC_SCHEMES_WITH_HASH, _NULL_ONLY, ecc=True)
    curve_id = r.u16("parameters.curveID")
    kdf = _parse_scheme(r, "parameters.kdf", _KDF_SCHEMES, _NULL_ONLY)
    x = r.tpm2b("unique.ecc.x", _MAX_ECC_KEY_BYTES)
    y = r.tpm2b("unique.ecc.y", _MAX_ECC_KEY_BYTES)
    curve_cls = alg.ECC_CURVES.get(curve_id)
    if curve_cls is None:
        raise MalformedEvidence(f"TPMT_PUBLIC.parameters.curveID: curve 0x{curve_id:04x} is not supported")
    curve = curve_cls()
    size = (curve.key_size + 7) // 8
    if not x or not y or len(x) > size or len(y) > size:
        raise MalformedEvidence(
            f"TPMT_PUBLIC.unique.ecc: coordinates of {len(x)} and {len(y)} bytes, expected 1..{size} for {curve.name}"
        )
    return EccParms(symmetric, scheme, curve_id, kdf, x, y)


def _make_key(parameters: RsaParms | EccParms) -> AkPublicKey:
    try:
        if isinstance(parameters, RsaParms):
            numbers = rsa.RSAPublicNumbers(parameters.effective_exponent, int.from_bytes(parameters.modulus, "big"))
            return numbers.public_key()
        curve = alg.ECC_CURVES[parameters.curve_id]()
        x, y = int.from_bytes(parameters.x, "big"), int.from_bytes(parameters.y, "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except (ValueError, KeyError) as exc:
        raise MalformedEvidence(f"TPMT_PUBLIC.unique: not a valid public key: {exc}") from None
