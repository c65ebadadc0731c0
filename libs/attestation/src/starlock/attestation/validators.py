"""Which validator serves which variant."""

from __future__ import annotations

from starlock.attestation.config import AttestationConfig
from starlock.attestation.errors import UnsupportedError
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import VtpmValidator

__all__ = ["SUPPORTED_VARIANTS", "validator_for"]


def _registry() -> dict[Variant, type[VtpmValidator]]:
    from starlock.attestation.qemu.validator import QemuVtpmValidator

    return {Variant.QEMU_VTPM: QemuVtpmValidator}


SUPPORTED_VARIANTS: tuple[Variant, ...] = (Variant.QEMU_VTPM,)


def validator_for(config: AttestationConfig) -> VtpmValidator:
    """The validator for ``config.variant``; UnsupportedError for variants not built yet."""
    cls = _registry().get(config.variant)
    if cls is None:
        raise UnsupportedError(
            f"variant {config.variant.value} has no validator in this version of Starlock "
            f"(supported: {', '.join(v.value for v in SUPPORTED_VARIANTS)})"
        )
    return cls(config)
