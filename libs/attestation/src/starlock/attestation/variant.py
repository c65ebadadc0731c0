"""Attestation variants and their aTLS extension OIDs (reference: spec-attestation §A2)."""

from __future__ import annotations

import enum

from starlock.attestation.errors import ConfigError

__all__ = ["Variant"]


class Variant(enum.Enum):
    """Every variant Constellation v2 defines; ``value`` is the wire name."""

    DUMMY = "dummy"
    AWS_NITRO_TPM = "aws-nitro-tpm"
    AWS_SEV_SNP = "aws-sev-snp"
    GCP_SEV_ES = "gcp-sev-es"
    GCP_SEV_SNP = "gcp-sev-snp"
    AZURE_SEV_SNP = "azure-sev-snp"
    AZURE_TRUSTED_LAUNCH = "azure-trustedlaunch"
    AZURE_TDX = "azure-tdx"
    QEMU_VTPM = "qemu-vtpm"
    QEMU_TDX = "qemu-tdx"

    @property
    def oid(self) -> str:
        """Dotted OID under the unregistered arc 1.3.9900, used as the aTLS extension id."""
        return _OIDS[self]

    @classmethod
    def from_string(cls, name: str) -> Variant:
        """Exact, lower-case match of the wire name."""
        for variant in cls:
            if variant.value == name:
                return variant
        raise ConfigError(f"unknown attestation variant {name!r:.64}; known: {', '.join(v.value for v in cls)}")

    @classmethod
    def from_oid(cls, oid: str) -> Variant:
        for variant, known in _OIDS.items():
            if known == oid:
                return variant
        raise ConfigError(f"unknown attestation variant OID {oid!r:.64}")

    def __str__(self) -> str:
        return self.value


_OIDS: dict[Variant, str] = {
    Variant.DUMMY: "1.3.9900.1.1",
    Variant.AWS_NITRO_TPM: "1.3.9900.2.1",
    Variant.AWS_SEV_SNP: "1.3.9900.2.2",
    Variant.GCP_SEV_ES: "1.3.9900.3.1",
    Variant.GCP_SEV_SNP: "1.3.9900.3.2",
    Variant.AZURE_SEV_SNP: "1.3.9900.4.1",
    Variant.AZURE_TRUSTED_LAUNCH: "1.3.9900.4.2",
    Variant.AZURE_TDX: "1.3.9900.4.3",
    Variant.QEMU_VTPM: "1.3.9900.5.1",
    Variant.QEMU_TDX: "1.3.9900.5.99",
}
