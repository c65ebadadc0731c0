"""AMD certificate bundles as third parties hold them, and the Azure HCL report as a report file.

* A THIM / KDS style bundle (VCEK or VLEK + ASK/ASVK + ARK in one PEM) is split by subject CN:
  the ``SEV-VCEK`` / ``SEV-VLEK`` leaf is the signer, the ``SEV-*`` and ``ARK-*`` certificates the
  chain. Nothing is trusted by splitting: the chain is verified afterwards as usual.
* The raw HCL report from the vTPM NV index 0x01400001 (``HCLA`` header) carries the SNP report at
  0x20..0x4C0 and the runtime data after the IGVM header (:mod:`starlock.attestation.azure.hcl`).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from cryptography import x509

from starlock.attestation.azure.hcl import HclReport, parse_hcl_report
from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.trust import describe, fingerprint, subject_cn

__all__ = ["HCL_MAGIC", "AmdBundle", "is_hcl_report", "read_hcl_report", "split_amd_bundle"]

HCL_MAGIC = b"HCLA"
_LEAF_CNS = ("SEV-VCEK", "SEV-VLEK")


@attrs.frozen
class AmdBundle:
    """A split bundle: ``signer`` (the VCEK/VLEK leaf, or None) and the CA ``chain`` (ASK/ASVK, ARK)."""

    signer: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]


def split_amd_bundle(certs: Sequence[x509.Certificate]) -> AmdBundle:
    """Split AMD certificates by role; raises :class:`MalformedEvidence` for anything that is not
    an AMD SEV certificate, or for two different leaves."""
    signer: x509.Certificate | None = None
    chain: list[x509.Certificate] = []
    for cert in certs:
        cn = subject_cn(cert) or ""
        if cn in _LEAF_CNS:
            if signer is not None and fingerprint(signer) != fingerprint(cert):
                raise MalformedEvidence(
                    f"AMD bundle: two different signer certificates ({describe(signer)}, {describe(cert)})"
                )
            signer = cert
        elif cn.startswith(("SEV-", "ARK-")):
            chain.append(cert)
        else:
            raise MalformedEvidence(
                f"AMD bundle: {describe(cert)} is not an AMD SEV certificate (expected CN SEV-VCEK, SEV-VLEK, "
                "SEV-<product>, SEV-VLEK-<product> or ARK-<product>)"
            )
    return AmdBundle(signer, tuple(chain))


def is_hcl_report(data: bytes) -> bool:
    return data[:4] == HCL_MAGIC


def read_hcl_report(data: bytes) -> HclReport:
    """Parse an HCL report file strictly (sizes of the header and IGVM data checked)."""
    return parse_hcl_report(data, check_sizes=True)
