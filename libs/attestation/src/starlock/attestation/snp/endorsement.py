"""VCEK / VLEK certificates (spec §2.2, §2.3): AMD's profile for them and their KDS extensions.

:func:`parse_endorsement_key` checks a VCEK/VLEK against AMD's certificate profile (X.509 v3,
RSASSA-PSS SHA-384, ECDSA P-384 key, AMD subject, only KDS extensions) and decodes its extensions
(SPLs, hwID, productName, CSP_ID) into an :class:`EndorsementKeyInfo`. Failures raise
:class:`CertificateChainError` (check ``signer-profile``) naming the violated rule. The chain
above the signer is :mod:`starlock.attestation.snp.certs`.
"""

from __future__ import annotations

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from starlock.attestation.errors import CertificateChainError, MalformedEvidence
from starlock.attestation.snp.report import Product, SigningKey, TcbLayout, TcbParts, TcbVersion
from starlock.attestation.trust import describe, fingerprint, issuer_of, subject_of

__all__ = [
    "AMD_LOCATION",
    "OID_BL_SPL",
    "OID_CSP_ID",
    "OID_FMC_SPL",
    "OID_HWID",
    "OID_PRODUCT_NAME",
    "OID_SNP_SPL",
    "OID_STRUCT_VERSION",
    "OID_TEE_SPL",
    "OID_UCODE_SPL",
    "EndorsementKeyInfo",
    "intermediate_cn",
    "location_problem",
    "parse_endorsement_key",
    "profile_error",
]

_KDS = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = f"{_KDS}.1"
OID_PRODUCT_NAME = f"{_KDS}.2"
OID_BL_SPL = f"{_KDS}.3.1"
OID_TEE_SPL = f"{_KDS}.3.2"
OID_SNP_SPL = f"{_KDS}.3.3"
_OID_SPL_4_7 = tuple(f"{_KDS}.3.{n}" for n in (4, 5, 6, 7))
OID_UCODE_SPL = f"{_KDS}.3.8"
OID_FMC_SPL = f"{_KDS}.3.9"
OID_HWID = f"{_KDS}.4"
OID_CSP_ID = f"{_KDS}.5"
_OID_AKI = ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string
_ALLOWED_EXTENSIONS = {
    OID_STRUCT_VERSION,
    OID_PRODUCT_NAME,
    OID_BL_SPL,
    OID_TEE_SPL,
    OID_SNP_SPL,
    *_OID_SPL_4_7,
    OID_UCODE_SPL,
    OID_FMC_SPL,
    OID_HWID,
    OID_CSP_ID,
    _OID_AKI,
}

#: The five location attributes of every AMD certificate subject and issuer.
AMD_LOCATION: tuple[tuple[x509.ObjectIdentifier, str], ...] = (
    (x509.NameOID.COUNTRY_NAME, "US"),
    (x509.NameOID.LOCALITY_NAME, "Santa Clara"),
    (x509.NameOID.STATE_OR_PROVINCE_NAME, "CA"),
    (x509.NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
    (x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
)
_SIGNER_CN = {SigningKey.VCEK: "SEV-VCEK", SigningKey.VLEK: "SEV-VLEK"}
_HWID_SIZES = (64, 8)  # Milan/Genoa, Turin


def intermediate_cn(product: Product, signing_key: SigningKey) -> str:
    """``SEV-<Line>`` (ASK, issues VCEKs) or ``SEV-VLEK-<Line>`` (ASVK, issues VLEKs)."""
    return f"SEV-VLEK-{product.value}" if signing_key is SigningKey.VLEK else f"SEV-{product.value}"


@attrs.frozen
class EndorsementKeyInfo:
    """What a VCEK/VLEK certificate states about the chip and TCB it was issued for."""

    kind: SigningKey
    struct_version: int | None
    product_name: str | None
    bootloader: int
    tee: int
    snp: int
    microcode: int
    spl_4_7: tuple[int, int, int, int]
    fmc: int | None
    hwid: bytes | None
    csp_id: str | None

    @property
    def product(self) -> Product | None:
        """The product line named by productName, None when absent."""
        return Product.from_name(self.product_name) if self.product_name else None

    def tcb(self, layout: TcbLayout = TcbLayout.MILAN_GENOA) -> TcbVersion:
        """The certificate's TCB_VERSION composed from its SPL extensions (spec §2.3).

        Milan/Genoa: ``ucode<<56 | snp<<48 | spl7<<40 | spl6<<32 | spl5<<24 | spl4<<16 | tee<<8 | bl``.
        Turin (inferred, spec §8): ``ucode<<56 | snp<<24 | tee<<16 | bl<<8 | fmc``; spl_4..7 unused.
        """
        if layout is TcbLayout.TURIN:
            parts = TcbParts(self.bootloader, self.tee, self.snp, self.microcode, self.fmc or 0)
            return TcbVersion.compose(parts, layout)
        octets = bytes([self.bootloader, self.tee, *self.spl_4_7, self.snp, self.microcode])
        return TcbVersion(int.from_bytes(octets, "little"))

    def claims(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind.name,
            "product_name": self.product_name,
            "bl_spl": self.bootloader,
            "tee_spl": self.tee,
            "snp_spl": self.snp,
            "ucode_spl": self.microcode,
        }
        if self.fmc is not None:
            out["fmc_spl"] = self.fmc
        if self.hwid is not None:
            out["hwid"] = self.hwid.hex()
        if self.csp_id is not None:
            out["csp_id"] = self.csp_id
        return out


def profile_error(cert: x509.Certificate, message: str) -> CertificateChainError:
    return CertificateChainError(f"signer {describe(cert)}: {message}", check="signer-profile")


def _der_value(raw: bytes, tag: int, what: str) -> bytes:
    """Content of a single short DER element with ``tag`` filling all of ``raw``."""
    if len(raw) < 2 or raw[0] != tag:
        raise MalformedEvidence(f"{what}: expected DER tag 0x{tag:02x}, got {raw[:1].hex() or 'nothing'}")
    length, pos = raw[1], 2
    if length == 0x81:
        if len(raw) < 3 or raw[2] < 0x80:
            raise MalformedEvidence(f"{what}: bad DER length")
        length, pos = raw[2], 3
    elif length > 0x80:
        raise MalformedEvidence(f"{what}: DER length too long")
    if pos + length != len(raw):
        raise MalformedEvidence(f"{what}: DER length {length} does not match {len(raw) - pos} content bytes")
    return raw[pos:]


def _der_small_int(raw: bytes, what: str) -> int:
    body = _der_value(raw, 0x02, what)
    if not body or len(body) > 2 or (len(body) == 2 and (body[0] != 0 or body[1] < 0x80)):
        raise MalformedEvidence(f"{what}: expected a DER INTEGER 0..255, got {raw.hex()}")
    value = int.from_bytes(body, "big", signed=True)
    if not 0 <= value <= 255:
        raise MalformedEvidence(f"{what}: expected 0..255, got {value}")
    return value


def _ia5(raw: bytes, what: str) -> str:
    body = _der_value(raw, 0x16, what)
    try:
        return body.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedEvidence(f"{what}: IA5String is not ASCII") from None


def _hwid(raw: bytes) -> bytes:
    if len(raw) in _HWID_SIZES:
        return raw
    if len(raw) - 2 in _HWID_SIZES and raw[0] == 0x04 and raw[1] == len(raw) - 2:
        return raw[2:]
    raise MalformedEvidence(f"hwID extension: expected 64 or 8 bytes (raw or OCTET STRING), got {len(raw)} bytes")


def parse_endorsement_key(cert: x509.Certificate, *, expected: SigningKey | None = None) -> EndorsementKeyInfo:
    """Check a VCEK/VLEK against AMD's profile and decode its KDS extensions.

    ``expected`` is the report's SIGNING_KEY; the certificate's CN must match it. Raises
    :class:`CertificateChainError` (check ``signer-profile``) naming the violated rule.
    """
    try:
        subject_of(cert)
        issuer_of(cert)
    except ValueError:
        raise CertificateChainError(
            f"signer (sha256 {fingerprint(cert)}): unparsable subject or issuer", check="signer-profile"
        ) from None
    if cert.version is not x509.Version.v3:
        raise profile_error(cert, f"X.509 version {cert.version.name}, expected v3")
    if cert.signature_algorithm_oid != x509.SignatureAlgorithmOID.RSASSA_PSS:
        raise profile_error(
            cert, f"signature algorithm {cert.signature_algorithm_oid.dotted_string}, expected RSASSA-PSS"
        )
    try:
        hash_alg = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise profile_error(cert, f"unsupported signature hash: {exc}") from exc
    if hash_alg is None or hash_alg.name != "sha384":
        raise profile_error(cert, f"signature hash {hash_alg.name if hash_alg else None}, expected sha384")
    try:
        key = cert.public_key()
        extensions = list(cert.extensions)
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise profile_error(cert, f"unparsable public key or extensions: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise profile_error(cert, f"public key {type(key).__name__}, expected ECDSA on P-384")
    kind = _subject_kind(cert)
    if expected is not None and kind is not expected:
        raise profile_error(
            cert,
            f"the report's SIGNING_KEY is {expected.name} but the certificate is a {kind.name} (CN {_SIGNER_CN[kind]})",
        )
    values: dict[str, bytes] = {}
    for ext in extensions:
        oid = ext.oid.dotted_string
        if oid not in _ALLOWED_EXTENSIONS:
            raise profile_error(cert, f"extension {oid} is not an AMD KDS extension")
        if isinstance(ext.value, x509.UnrecognizedExtension):
            values[oid] = ext.value.value
    try:
        info = _decode_extensions(kind, values)
    except MalformedEvidence as exc:
        raise profile_error(cert, str(exc)) from exc
    return info


def _subject_kind(cert: x509.Certificate) -> SigningKey:
    name = subject_of(cert)
    problem = location_problem(name)
    if problem:
        raise profile_error(cert, f"subject {problem}")
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = cns[0].value if len(cns) == 1 else None
    for kind, expected_cn in _SIGNER_CN.items():
        if cn == expected_cn:
            return kind
    raise profile_error(cert, f"subject CN {cn!r}, expected 'SEV-VCEK' or 'SEV-VLEK'")


def location_problem(name: x509.Name) -> str | None:
    for oid, value in AMD_LOCATION:
        found = [a.value for a in name.get_attributes_for_oid(oid)]
        if found != [value]:
            return f"attribute {oid._name}: expected exactly {value!r}, got {found}"
    return None


def _decode_extensions(kind: SigningKey, values: dict[str, bytes]) -> EndorsementKeyInfo:
    def spl(oid: str, name: str, *, required: bool = True, limit: int = 127) -> int:
        if oid not in values:
            if required:
                raise MalformedEvidence(f"required extension {name} ({oid}) is missing")
            return 0
        value = _der_small_int(values[oid], f"extension {name}")
        if value > limit:
            raise MalformedEvidence(f"extension {name}: expected at most {limit}, got {value}")
        return value

    hwid = _hwid(values[OID_HWID]) if OID_HWID in values else None
    csp_id = _ia5(values[OID_CSP_ID], "extension CSP_ID") if OID_CSP_ID in values else None
    if kind is SigningKey.VCEK and (hwid is None or csp_id is not None):
        raise MalformedEvidence("a VCEK must carry hwID (1.3.6.1.4.1.3704.1.4) and no CSP_ID")
    if kind is SigningKey.VLEK and (hwid is not None or csp_id is None):
        raise MalformedEvidence("a VLEK must carry CSP_ID (1.3.6.1.4.1.3704.1.5) and no hwID")
    struct_version = (
        _der_small_int(values[OID_STRUCT_VERSION], "extension structVersion") if OID_STRUCT_VERSION in values else None
    )
    name = _ia5(values[OID_PRODUCT_NAME], "extension productName") if OID_PRODUCT_NAME in values else None
    if name is not None:
        Product.from_name(name)  # must name a known line
    spl_4_7 = tuple(spl(oid, f"spl_{i + 4}", required=False) for i, oid in enumerate(_OID_SPL_4_7))
    return EndorsementKeyInfo(
        kind=kind,
        struct_version=struct_version,
        product_name=name,
        bootloader=spl(OID_BL_SPL, "blSPL"),
        tee=spl(OID_TEE_SPL, "teeSPL"),
        snp=spl(OID_SNP_SPL, "snpSPL"),
        microcode=spl(OID_UCODE_SPL, "ucodeSPL", limit=255),
        spl_4_7=(spl_4_7[0], spl_4_7[1], spl_4_7[2], spl_4_7[3]),
        fmc=spl(OID_FMC_SPL, "fmcSPL") if OID_FMC_SPL in values else None,
        hwid=hwid,
        csp_id=csp_id,
    )
