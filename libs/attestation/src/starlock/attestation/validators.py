"""Which validator serves which variant, and the adapters a caller can give them.

:func:`validator_for` builds the validator for ``config.variant`` with a verification time
(``at``, default: the time of each validation) and the optional adapters in
:class:`ValidatorAdapters` (cloud APIs, trust stores). A variant uses only the adapters it needs.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import attrs

from starlock.attestation.config import AttestationConfig
from starlock.attestation.errors import UnsupportedError
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import VtpmValidator

__all__ = ["SUPPORTED_VARIANTS", "ValidatorAdapters", "validator_for"]


@attrs.frozen
class ValidatorAdapters:
    """Optional adapters and trust material; ``None`` means "not available" (see each variant).

    * ``ak_trust``: a :class:`~starlock.attestation.trust.TrustStore` with the roots (and optional
      intermediates) that certify AKs: Google EK/AK CAs (gcp-*), Microsoft AME root (azure-trustedlaunch).
    * ``gce_identity``: a ``ShieldedInstanceIdentityClient`` (gcp-sev-es, gcp-sev-snp).
    * ``aws_image_checker``: an ``ImageTpmSupportChecker`` (aws-nitro-tpm).
    * ``maa_jwks_fetcher``: a ``JwksFetcher`` for the MAA fallback (azure-sev-snp); default HTTP.
    * ``allow_legacy_nonce_binding``: accept pre-2024 documents (TPM nonce = extraData).
    """

    ak_trust: Any = None
    gce_identity: Any = None
    aws_image_checker: Any = None
    maa_jwks_fetcher: Any = None
    allow_legacy_nonce_binding: bool = False


Factory = Callable[[AttestationConfig, datetime.datetime | None, ValidatorAdapters], VtpmValidator]


def _qemu(config: AttestationConfig, at: datetime.datetime | None, adapters: ValidatorAdapters) -> VtpmValidator:
    from starlock.attestation.qemu.validator import QemuVtpmValidator

    return QemuVtpmValidator(config)


def _aws_nitro(config: AttestationConfig, at: datetime.datetime | None, adapters: ValidatorAdapters) -> VtpmValidator:
    from starlock.attestation.aws.nitrotpm import AwsNitroTpmValidator

    return AwsNitroTpmValidator(
        config,
        at=at,
        image_checker=adapters.aws_image_checker,
        allow_legacy_nonce_binding=adapters.allow_legacy_nonce_binding,
    )


def _gcp_es(config: AttestationConfig, at: datetime.datetime | None, adapters: ValidatorAdapters) -> VtpmValidator:
    from starlock.attestation.gcp.es import GcpSevEsValidator

    return GcpSevEsValidator(config, at=at, identity_client=adapters.gce_identity, ak_trust=adapters.ak_trust)


def _azure_tl(config: AttestationConfig, at: datetime.datetime | None, adapters: ValidatorAdapters) -> VtpmValidator:
    from starlock.attestation.azure.trustedlaunch import AzureTrustedLaunchValidator

    return AzureTrustedLaunchValidator(config, at=at, ak_trust=adapters.ak_trust)


def _azure_snp(config: AttestationConfig, at: datetime.datetime | None, adapters: ValidatorAdapters) -> VtpmValidator:
    from starlock.attestation.azure.snp import AzureSevSnpValidator

    return AzureSevSnpValidator(config, at=at, jwks_fetcher=adapters.maa_jwks_fetcher)


def _aws_snp(config: AttestationConfig, at: datetime.datetime | None, adapters: ValidatorAdapters) -> VtpmValidator:
    from starlock.attestation.aws.snp import AwsSevSnpValidator

    return AwsSevSnpValidator(config, at=at)


def _gcp_snp(config: AttestationConfig, at: datetime.datetime | None, adapters: ValidatorAdapters) -> VtpmValidator:
    from starlock.attestation.gcp.snp import GcpSevSnpValidator

    return GcpSevSnpValidator(config, at=at, identity_client=adapters.gce_identity, ak_trust=adapters.ak_trust)


_FACTORIES: dict[Variant, Factory] = {
    Variant.QEMU_VTPM: _qemu,
    Variant.AWS_NITRO_TPM: _aws_nitro,
    Variant.GCP_SEV_ES: _gcp_es,
    Variant.AZURE_TRUSTED_LAUNCH: _azure_tl,
    Variant.AZURE_SEV_SNP: _azure_snp,
    Variant.AWS_SEV_SNP: _aws_snp,
    Variant.GCP_SEV_SNP: _gcp_snp,
}

SUPPORTED_VARIANTS: tuple[Variant, ...] = tuple(_FACTORIES)


def validator_for(
    config: AttestationConfig,
    *,
    at: datetime.datetime | None = None,
    adapters: ValidatorAdapters | None = None,
    allow_unenforced: bool = False,
) -> VtpmValidator:
    """The validator for ``config.variant``; UnsupportedError for variants not built yet.

    ``at``: the verification time for certificate validity (timezone-aware; None = now, read at
    each validation). A config that enforces no measurement raises ConfigError unless it carries
    the opt-in already (``load_attestation_config(..., allow_unenforced=True)``) or
    ``allow_unenforced`` is true here; the validator then logs a WARNING.
    """
    if allow_unenforced and not config.allow_unenforced:
        config = attrs.evolve(config, allow_unenforced=True)
    factory = _FACTORIES.get(config.variant)
    if factory is None:
        raise UnsupportedError(
            f"variant {config.variant.value} has no validator in this version of Starlock "
            f"(supported: {', '.join(v.value for v in SUPPORTED_VARIANTS)})"
        )
    return factory(config, at, adapters or ValidatorAdapters())
