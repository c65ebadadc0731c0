"""VCEK / VLEK certificates and their AMD chain (ARK -> ASK/ASVK -> VCEK/VLEK), spec §2.

* :func:`parse_endorsement_key` checks a VCEK/VLEK against AMD's certificate profile (§2.2:
  X.509 v3, RSASSA-PSS SHA-384, ECDSA P-384 key, AMD subject, only KDS extensions) and decodes
  its extensions (§2.3: SPLs, hwID, productName, CSP_ID); it lives in :mod:`.endorsement` and is
  re-exported here with the OIDs and :class:`EndorsementKeyInfo`.
* :func:`select_chain` picks the intermediate (ASK or ASVK) and ARK for a product line and
  signing key out of a bundle (KDS ``cert_chain``, THIM chain, cert table...).
* :func:`verify_chain` checks the three links, CA flags, the root's pin (or the caller's explicit
  trust) and returns a :class:`VerifiedChain`; :func:`check_chain_validity` checks the validity
  periods at a verification time (separate, so a verified chain can be cached).

Beyond go-sev-guest: the ARK's self-signature is verified too, and the ARK and the intermediate
must follow AMD's CA profile (:mod:`.caprofile`: v3, RSASSA-PSS/SHA-384, CN, CA, keyCertSign).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from starlock.attestation.errors import CertificateChainError
from starlock.attestation.snp.caprofile import check_amd_ca_profile
from starlock.attestation.snp.endorsement import (
    AMD_LOCATION,
    OID_BL_SPL,
    OID_CSP_ID,
    OID_FMC_SPL,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_SNP_SPL,
    OID_STRUCT_VERSION,
    OID_TEE_SPL,
    OID_UCODE_SPL,
    EndorsementKeyInfo,
    intermediate_cn,
    location_problem,
    parse_endorsement_key,
    profile_error,
)
from starlock.attestation.snp.report import Product, SigningKey
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
    "intermediate_cn",
    "parse_endorsement_key",
    "select_chain",
    "verify_chain",
]

_FAMILY = {Product.MILAN: Family.AMD_MILAN, Product.GENOA: Family.AMD_GENOA, Product.TURIN: Family.AMD_TURIN}


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
        raise profile_error(signer, f"is a {info.kind.name}, the report's SIGNING_KEY is {signing_key.name}")
    want_int, want_ark = intermediate_cn(product, signing_key), f"ARK-{product.value}"
    problem = location_problem(issuer_of(signer))
    issuer_cn = [a.value for a in issuer_of(signer).get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if problem or issuer_cn != [want_int]:
        raise _chain_error(
            f"signer {describe(signer)}: issuer CN {issuer_cn}, expected [{want_int!r}] "
            f"for a {product.value} {signing_key.name}" + (f"; issuer {problem}" if problem else "")
        )
    for cert, want in ((intermediate, want_int), (ark, want_ark)):
        # v3, RSASSA-PSS/SHA-384, RSA key, subject CN, CA basicConstraints, keyCertSign
        check_amd_ca_profile(cert, want)
    pinned = _check_root(ark, product, store)
    verify_signed_by(signer, intermediate)
    verify_signed_by(intermediate, ark)
    verify_signed_by(ark, ark)
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):  # pragma: no cover - parse_endorsement_key checked it
        raise profile_error(signer, "public key is not ECDSA")
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


def check_chain_validity(chain: VerifiedChain | Sequence[x509.Certificate], at: datetime.datetime) -> None:
    """Every certificate of the chain must be valid at ``at`` (check ``certificate-validity``)."""
    certs = chain.certificates if isinstance(chain, VerifiedChain) else tuple(chain)
    for cert in certs:
        try:
            check_validity(cert, at)
        except CertificateChainError as exc:
            raise CertificateChainError(str(exc), check="certificate-validity") from None
