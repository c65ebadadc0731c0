"""What the KDS returns, checked: product chains against the pins, VCEKs against chain, hwID and TCB."""

from __future__ import annotations

import attrs
from cryptography import x509

from starlock.attestation.errors import AttestationError, CertificateChainError, MalformedEvidence
from starlock.attestation.snp.certs import verify_chain
from starlock.attestation.snp.kds._common import _kind, _spls, hwid_for
from starlock.attestation.snp.report import Product, SigningKey, TcbParts, TcbVersion
from starlock.attestation.trust import Family, TrustStore, describe, load_certificates

__all__ = ["ProductChain", "SnpCertificates", "check_vcek"]


@attrs.frozen
class ProductChain:
    """A checked ``cert_chain``: the pinned ASK (or ASVK for VLEK) and the pinned ARK of ``product``."""

    product: Product
    signing_key: SigningKey
    intermediate: x509.Certificate
    ark: x509.Certificate


@attrs.frozen
class SnpCertificates:
    """The certificates to verify a report with: the signer (VCEK/VLEK) and its product chain.

    Hand them to the report verification (``verify_report`` / ``verify_chain``), which checks all.
    """

    chain: ProductChain
    signer: x509.Certificate

    @property
    def certificates(self) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        """(signer, intermediate, ARK), the order of ``VerifiedChain.certificates``."""
        return (self.signer, self.chain.intermediate, self.chain.ark)


def check_vcek(
    cert: x509.Certificate,
    chain: ProductChain,
    chip_id: bytes,
    tcb: TcbVersion | TcbParts,
    *,
    store: TrustStore | None = None,
) -> None:
    """Check a VCEK before it is cached: AMD profile, VCEK <- ASK <- pinned ARK, requested hwID and SPLs.

    Raises :class:`CertificateChainError` (the ``check`` of the failed step is kept).
    """
    line = chain.product
    try:
        verified = verify_chain(
            cert, chain.intermediate, chain.ark, product=line, signing_key=SigningKey.VCEK, trust_store=store
        )
    except AttestationError as exc:
        raise CertificateChainError(f"VCEK not accepted with the {line} ASK and ARK: {exc}", check=exc.check) from exc
    info, wanted, parts = verified.endorsement, hwid_for(line, chip_id), _spls(line, tcb)
    if info.hwid != wanted:
        got = info.hwid.hex() if info.hwid is not None else None
        raise CertificateChainError(f"VCEK {describe(cert)}: hwID {got}, expected {wanted.hex()}")
    actual = TcbParts(info.bootloader, info.tee, info.snp, info.microcode, info.fmc)
    if actual != parts:
        raise CertificateChainError(f"VCEK {describe(cert)}: TCB {actual.describe()}, expected {parts.describe()}")


def _one_certificate(data: bytes | x509.Certificate, what: str) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    certs = load_certificates(data)
    if len(certs) != 1:
        raise MalformedEvidence(f"{what}: expected one certificate, got {len(certs)}")
    return certs[0]


class _Pins:
    """Which pinned anchor each role of a product's chain must be."""

    def __init__(self, store: TrustStore) -> None:
        self._store = store

    def require(self, cert: x509.Certificate, product: Product, name: str) -> None:
        anchor = self._store.pin_for(cert)
        if anchor is None or anchor.family != _FAMILY[product] or anchor.name != name:
            got = "not pinned" if anchor is None else f"pinned as {anchor.name}"
            raise CertificateChainError(f"expected the pinned {name}, got {describe(cert)} ({got})")

    def check_chain(self, certs: list[x509.Certificate], product: Product, key: SigningKey) -> ProductChain:
        if len(certs) != 2:
            raise CertificateChainError(
                f"{_kind(key)} cert_chain for {product}: expected 2 certificates, got {len(certs)}"
            )
        intermediate, ark = certs
        self.require(intermediate, product, _intermediate_name(product, key))
        self.require(ark, product, f"ARK-{product}")
        return ProductChain(product, key, intermediate, ark)


def _intermediate_name(product: Product, key: SigningKey) -> str:
    """The pin name of the ASK (VCEK) or ASVK (VLEK) of ``product``."""
    return f"{'ASK' if key is SigningKey.VCEK else 'ASVK'}-{product}"


_FAMILY = {Product.MILAN: Family.AMD_MILAN, Product.GENOA: Family.AMD_GENOA, Product.TURIN: Family.AMD_TURIN}
