"""VCEK / VLEK certificates and their AMD chain (ARK -> ASK/ASVK -> VCEK/VLEK), spec §2.

* :func:`parse_endorsement_key` checks a VCEK/VLEK against AMD's certificate profile (§2.2:
  X.509 v3, RSASSA-PSS SHA-384, ECDSA P-384 key, AMD subject, only KDS extensions) and decodes
  its extensions (§2.3: SPLs, hwID, productName, CSP_ID).
* :func:`select_chain` picks the intermediate (ASK or ASVK) and ARK for a product line and
  signing key out of a bundle (KDS ``cert_chain``, THIM chain, cert table...).
* :func:`verify_chain` checks the three links, CA flags, the root's pin (or the caller's explicit
  trust) and returns a :class:`VerifiedChain`; :func:`check_chain_validity` checks the validity
  periods at a verification time (separate, so a verified chain can be cached).

Beyond go-sev-guest: the ARK's self-signature is verified too, and the intermediate must be a CA.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from starlock.attestation.errors import CertificateChainError, MalformedEvidence
from starlock.attestation.snp.report import Product, SigningKey, TcbLayout, TcbParts, TcbVersion
from starlock.attestation.trust import (
    PINNED_ANCHORS,
    Family,
    Role,
    TrustStore,
    check_validity,
    describe,
    fingerprint,
    issuer_of,
    subject_of,
    verify_signed_by,
)

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
    "VerifiedChain",
    "amd_trust_store",
    "check_chain_validity",
    "parse_endorsement_key",
    "select_chain",
    "verify_chain",
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
_FAMILY = {Product.MILAN: Family.AMD_MILAN, Product.GENOA: Family.AMD_GENOA, Product.TURIN: Family.AMD_TURIN}
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


def _profile_error(cert: x509.Certificate, message: str) -> CertificateChainError:
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
    if cert.version is not x509.Version.v3:
        raise _profile_error(cert, f"X.509 version {cert.version.name}, expected v3")
    if cert.signature_algorithm_oid != x509.SignatureAlgorithmOID.RSASSA_PSS:
        raise _profile_error(
            cert, f"signature algorithm {cert.signature_algorithm_oid.dotted_string}, expected RSASSA-PSS"
        )
    try:
        hash_alg = cert.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise _profile_error(cert, f"unsupported signature hash: {exc}") from exc
    if hash_alg is None or hash_alg.name != "sha384":
        raise _profile_error(cert, f"signature hash {hash_alg.name if hash_alg else None}, expected sha384")
    try:
        key = cert.public_key()
        extensions = list(cert.extensions)
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise _profile_error(cert, f"unparsable public key or extensions: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise _profile_error(cert, f"public key {type(key).__name__}, expected ECDSA on P-384")
    kind = _subject_kind(cert)
    if expected is not None and kind is not expected:
        raise _profile_error(
            cert,
            f"the report's SIGNING_KEY is {expected.name} but the certificate is a {kind.name} (CN {_SIGNER_CN[kind]})",
        )
    values: dict[str, bytes] = {}
    for ext in extensions:
        oid = ext.oid.dotted_string
        if oid not in _ALLOWED_EXTENSIONS:
            raise _profile_error(cert, f"extension {oid} is not an AMD KDS extension")
        if isinstance(ext.value, x509.UnrecognizedExtension):
            values[oid] = ext.value.value
    try:
        info = _decode_extensions(kind, values)
    except MalformedEvidence as exc:
        raise _profile_error(cert, str(exc)) from exc
    return info


def _subject_kind(cert: x509.Certificate) -> SigningKey:
    name = subject_of(cert)
    problem = _location_problem(name)
    if problem:
        raise _profile_error(cert, f"subject {problem}")
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = cns[0].value if len(cns) == 1 else None
    for kind, expected_cn in _SIGNER_CN.items():
        if cn == expected_cn:
            return kind
    raise _profile_error(cert, f"subject CN {cn!r}, expected 'SEV-VCEK' or 'SEV-VLEK'")


def _location_problem(name: x509.Name) -> str | None:
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


# --- the chain ------------------------------------------------------------------------------------


def _cn_of(cert: x509.Certificate) -> str | None:
    attrs_ = subject_of(cert).get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(attrs_) != 1:
        return None
    value = attrs_[0].value
    return value if isinstance(value, str) else None


def select_chain(
    certs: Iterable[x509.Certificate], product: Product, signing_key: SigningKey
) -> tuple[x509.Certificate, x509.Certificate]:
    """Pick (intermediate, ARK) for ``product`` and ``signing_key`` from a bundle, by subject CN.

    Extra certificates (other lines, the other intermediate) are ignored; two different
    certificates with the wanted name are refused as ambiguous. Raises
    :class:`CertificateChainError` naming what was missing and what the bundle held.
    """
    certs = list(certs)
    want_int, want_ark = intermediate_cn(product, signing_key), f"ARK-{product.value}"
    found: dict[str | None, x509.Certificate] = {}
    for cert in certs:
        cn = _cn_of(cert)
        if cn in (want_int, want_ark) and cn in found and found[cn] != cert:
            raise CertificateChainError(
                f"AMD chain: two different certificates named {cn} ({describe(found[cn])}, {describe(cert)})",
                check="certificate-chain",
            )
        found.setdefault(cn, cert)
    missing = [cn for cn in (want_int, want_ark) if cn not in found]
    if missing:
        held = ", ".join(sorted(str(cn) for cn in found)) or "no certificates"
        raise CertificateChainError(
            f"AMD chain for a {product.value} {signing_key.name}: expected {want_int} and {want_ark}, "
            f"missing {', '.join(missing)} (the chain holds {held})",
            check="certificate-chain",
        )
    return found[want_int], found[want_ark]


@attrs.frozen
class VerifiedChain:
    """A VCEK/VLEK whose chain to a trusted ARK verified (validity periods are checked separately)."""

    signer: x509.Certificate = attrs.field(repr=False)
    intermediate: x509.Certificate = attrs.field(repr=False)
    ark: x509.Certificate = attrs.field(repr=False)
    product: Product
    signing_key: SigningKey
    endorsement: EndorsementKeyInfo
    root_pinned: bool
    public_key: ec.EllipticCurvePublicKey = attrs.field(repr=False)

    @property
    def certificates(self) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        return (self.signer, self.intermediate, self.ark)


def amd_trust_store() -> TrustStore:
    """A TrustStore with only the AMD pins (ARK/ASK/ASVK of Milan, Genoa, Turin)."""
    return TrustStore([a for a in PINNED_ANCHORS if a.family in _FAMILY.values()])


_DEFAULT_STORE = amd_trust_store()


def _chain_error(message: str, check: str = "certificate-chain") -> CertificateChainError:
    return CertificateChainError(message, check=check)


def verify_chain(
    signer: x509.Certificate,
    intermediate: x509.Certificate,
    ark: x509.Certificate,
    *,
    product: Product,
    signing_key: SigningKey,
    trust_store: TrustStore | None = None,
    endorsement: EndorsementKeyInfo | None = None,
) -> VerifiedChain:
    """Verify signer <- intermediate <- ARK for ``product``/``signing_key`` (no validity periods).

    The ARK must be pinned (the trust module's AMD pins, for this product's family) or be in
    ``trust_store`` as an explicitly trusted certificate. Raises :class:`CertificateChainError`
    (checks ``signer-profile``, ``certificate-chain``, ``root-pinned``) or
    :class:`~starlock.attestation.errors.SignatureError` for a link that does not verify.
    """
    store = trust_store if trust_store is not None else _DEFAULT_STORE
    info = endorsement if endorsement is not None else parse_endorsement_key(signer, expected=signing_key)
    if info.kind is not signing_key:
        raise _profile_error(signer, f"is a {info.kind.name}, the report's SIGNING_KEY is {signing_key.name}")
    want_int, want_ark = intermediate_cn(product, signing_key), f"ARK-{product.value}"
    problem = _location_problem(issuer_of(signer))
    issuer_cn = [a.value for a in issuer_of(signer).get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if problem or issuer_cn != [want_int]:
        raise _chain_error(
            f"signer {describe(signer)}: issuer CN {issuer_cn}, expected [{want_int!r}] "
            f"for a {product.value} {signing_key.name}" + (f"; issuer {problem}" if problem else "")
        )
    for cert, want in ((intermediate, want_int), (ark, want_ark)):
        cn = _cn_of(cert)
        if cn != want:
            raise _chain_error(f"certificate {describe(cert)}: subject CN {cn!r}, expected {want!r}")
    pinned = _check_root(ark, product, store)
    verify_signed_by(signer, intermediate)
    verify_signed_by(intermediate, ark)
    verify_signed_by(ark, ark)
    for cert in (intermediate, ark):
        _require_ca(cert)
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):  # pragma: no cover - parse_endorsement_key checked it
        raise _profile_error(signer, "public key is not ECDSA")
    return VerifiedChain(signer, intermediate, ark, product, signing_key, info, pinned, key)


def _check_root(ark: x509.Certificate, product: Product, store: TrustStore) -> bool:
    fp = fingerprint(ark)
    entry = store.get(fp)
    anchor = entry.anchor if entry is not None else store.pin_for(ark)
    if entry is None and anchor is None:
        raise _chain_error(
            f"root {describe(ark)} is not a pinned AMD root and was not explicitly trusted "
            "(pass a TrustStore holding it with explicitly_trusted=True to opt in)",
            check="root-pinned",
        )
    if anchor is not None and (anchor.role is not Role.ROOT or anchor.family is not _FAMILY[product]):
        raise _chain_error(
            f"root {describe(ark)} is pinned as {anchor.name} ({anchor.role.value}, {anchor.family.value}), "
            f"expected the ARK of {product.value}",
            check="root-pinned",
        )
    return anchor is not None


def _require_ca(cert: x509.Certificate) -> None:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise _chain_error(f"certificate {describe(cert)} signs certificates but is not a CA (basicConstraints)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise _chain_error(f"certificate {describe(cert)} signs certificates but keyUsage lacks keyCertSign")


def check_chain_validity(chain: VerifiedChain | Sequence[x509.Certificate], at: datetime.datetime) -> None:
    """Every certificate of the chain must be valid at ``at`` (check ``certificate-validity``)."""
    certs = chain.certificates if isinstance(chain, VerifiedChain) else tuple(chain)
    for cert in certs:
        try:
            check_validity(cert, at)
        except CertificateChainError as exc:
            raise CertificateChainError(str(exc), check="certificate-validity") from None
