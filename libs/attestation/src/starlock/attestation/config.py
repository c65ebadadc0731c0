"""Attestation config: the per-variant JSON of the join-config (reference: spec-attestation §A5).

:func:`load_attestation_config` takes the JSON (or YAML) object of one variant's struct, as the
join service reads it from the ``join-config`` ConfigMap key ``attestationConfig``, or a
Constellation CLI config (``attestation: {qemuVTPM: {...}}``), and returns a typed, frozen
config. Missing or malformed fields raise :class:`ConfigError` naming the field.

Beyond upstream: ``acceptedAttestationKeys`` (list of hex TPM names of AKs, ``000b…``) pins the
AKs a TPM-only validator accepts; upstream trusts any AK for ``qemu-vtpm``.

Differs from upstream on purpose: a config that enforces no measurement (``"measurements": {}``,
``null``, or only ``warnOnly`` entries) is refused with :class:`ConfigError`, because its validator
would accept any TPM state (with ``qemu-vtpm``: any software TPM). A caller that really wants that
opts in with ``allow_unenforced=True`` or Starlock's own field ``"allowUnenforcedMeasurements":
true``; the validator built from such a config logs a WARNING and reports a WARN check. Keys
given twice in the JSON/YAML text are refused, not silently overwritten.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from starlock.attestation._strictload import load_json, load_yaml
from starlock.attestation.errors import ConfigError
from starlock.attestation.measurements import Measurements
from starlock.attestation.variant import Variant

__all__ = [
    "AttestationConfig",
    "EnforcementPolicy",
    "FirmwareSignerConfig",
    "SnpVersions",
    "check_enforced",
    "load_attestation_config",
]

MAX_CONFIG_SIZE = 1024 * 1024

#: Keys of each variant in the Constellation CLI's YAML config (``attestation:`` section).
CLI_CONFIG_KEYS: Mapping[Variant, str] = {
    Variant.AWS_SEV_SNP: "awsSEVSNP",
    Variant.AWS_NITRO_TPM: "awsNitroTPM",
    Variant.AZURE_SEV_SNP: "azureSEVSNP",
    Variant.AZURE_TDX: "azureTDX",
    Variant.AZURE_TRUSTED_LAUNCH: "azureTrustedLaunch",
    Variant.GCP_SEV_ES: "gcpSEVES",
    Variant.GCP_SEV_SNP: "gcpSEVSNP",
    Variant.QEMU_TDX: "qemuTDX",
    Variant.QEMU_VTPM: "qemuVTPM",
}

_TPM_ONLY = {Variant.AWS_NITRO_TPM, Variant.AZURE_TRUSTED_LAUNCH, Variant.GCP_SEV_ES, Variant.QEMU_VTPM}
_SNP = {Variant.AWS_SEV_SNP, Variant.GCP_SEV_SNP, Variant.AZURE_SEV_SNP}
_SNP_VERSION_KEYS = ("bootloaderVersion", "teeVersion", "snpVersion", "microcodeVersion")
_OWN_KEYS = ("acceptedAttestationKeys", "allowUnenforcedMeasurements")


class EnforcementPolicy(enum.Enum):
    EQUAL = "equal"
    MAA_FALLBACK = "maaFallback"
    WARN_ONLY = "warnOnly"


@attrs.frozen
class SnpVersions:
    """Minimum launch TCB: bootloader, TEE, SNP firmware and microcode security versions."""

    bootloader: int
    tee: int
    snp: int
    microcode: int


@attrs.frozen
class FirmwareSignerConfig:
    accepted_key_digests: tuple[bytes, ...]
    enforcement_policy: EnforcementPolicy
    maa_url: str


@attrs.frozen
class AttestationConfig:
    """One variant's attestation config. Fields that a variant does not use stay None/empty."""

    variant: Variant
    measurements: Measurements
    accepted_ak_names: tuple[bytes, ...] = ()
    snp_versions: SnpVersions | None = None
    amd_root_key_pem: str = ""
    amd_signing_key_pem: str = ""
    firmware_signer: FirmwareSignerConfig | None = None
    #: The explicit opt-in to a config that enforces no measurement (see :func:`check_enforced`).
    allow_unenforced: bool = False


def load_attestation_config(
    data: bytes | str | Mapping[str, Any], variant: Variant, *, allow_unenforced: bool = False
) -> AttestationConfig:
    """Parse a variant's attestation config from JSON/YAML text or a decoded mapping.

    A config that enforces no measurement raises :class:`ConfigError` unless ``allow_unenforced``
    is true or the config itself says ``"allowUnenforcedMeasurements": true`` (Starlock's own field).
    """
    obj = _decode(data) if isinstance(data, bytes | str) else data
    if not isinstance(obj, Mapping):
        raise ConfigError("attestation config must be an object")
    # A full CLI config: pick this variant's section.
    if "attestation" in obj and isinstance(obj["attestation"], Mapping):
        section = obj["attestation"]
        key = CLI_CONFIG_KEYS.get(variant)
        if key is None or key not in section:
            raise ConfigError(f"CLI config has no attestation section {key!r} for variant {variant.value}")
        obj = section[key]
        if not isinstance(obj, Mapping):
            raise ConfigError(f"attestation.{key} must be an object")
    if variant in _TPM_ONLY:
        allowed = {"measurements", *_OWN_KEYS}
    elif variant in _SNP:
        allowed = {"measurements", *_SNP_VERSION_KEYS, "amdRootKey", "amdSigningKey", *_OWN_KEYS}
        if variant is Variant.AZURE_SEV_SNP:
            allowed.add("firmwareSignerConfig")
    else:
        raise ConfigError(f"attestation configs for variant {variant.value} are not supported by Starlock")
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        raise ConfigError(f"attestation config for {variant.value}: unknown fields {unknown}")
    if "measurements" not in obj:
        raise ConfigError(f"attestation config for {variant.value}: missing field 'measurements'")
    config = AttestationConfig(
        variant=variant,
        measurements=Measurements.from_obj(obj["measurements"]),
        accepted_ak_names=_parse_ak_names(obj.get("acceptedAttestationKeys")),
        allow_unenforced=allow_unenforced or _parse_opt_in(obj.get("allowUnenforcedMeasurements", False)),
    )
    check_enforced(config)
    if variant in _SNP:
        config = attrs.evolve(
            config,
            snp_versions=SnpVersions(*(_parse_version(obj, key) for key in _SNP_VERSION_KEYS)),
            amd_root_key_pem=_parse_pem(obj, "amdRootKey", required=True),
            amd_signing_key_pem=_parse_pem(obj, "amdSigningKey", required=False),
        )
    if variant is Variant.AZURE_SEV_SNP:
        config = attrs.evolve(config, firmware_signer=_parse_firmware_signer(obj.get("firmwareSignerConfig")))
    return config


def check_enforced(config: AttestationConfig) -> None:
    """Refuse a config whose measurements enforce nothing, unless it carries the explicit opt-in.

    Raises :class:`ConfigError` (check ``config``) naming what was found. The opt-in itself is
    logged (WARNING) by the validator built from the config, not here.
    """
    if config.measurements.enforced or config.allow_unenforced:
        return
    warn_only = len(config.measurements)
    found = f"{warn_only} warnOnly entries and none enforced" if warn_only else "no entries"
    raise ConfigError(
        f"attestation config for {config.variant.value}: measurements: expected at least one enforced entry "
        f'("warnOnly": false), got {found}; such a validator accepts any TPM state'
        + (" (with qemu-vtpm: any software TPM)" if config.variant is Variant.QEMU_VTPM else "")
        + ". Configure the expected PCR values, or opt in explicitly with allow_unenforced=True "
        '(starlock-verify: --allow-unenforced) or "allowUnenforcedMeasurements": true'
    )


def _decode(data: bytes | str) -> Any:
    if len(data) > MAX_CONFIG_SIZE:
        raise ConfigError(f"attestation config is larger than {MAX_CONFIG_SIZE} bytes")
    try:
        # A key given twice raises ConfigError, which is no ValueError: it is not retried as YAML.
        return load_json(data, "attestation config")
    except ValueError:
        pass
    try:
        return load_yaml(data, "attestation config")
    except yaml.YAMLError as exc:
        raise ConfigError(f"attestation config is neither JSON nor YAML: {exc}") from None


def _parse_version(obj: Mapping[str, Any], key: str) -> int:
    if key not in obj:
        raise ConfigError(f"attestation config: missing field {key!r}")
    value = obj[key]
    if isinstance(value, str) and value.lower() == "latest":
        raise ConfigError(
            f"attestation config: {key} is 'latest'; resolve it to a number before validating "
            "(the CLI does this when it writes the join-config)"
        )
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ConfigError(f"attestation config: {key} must be a number from 0 to 255, got {str(value)[:20]!r}")
    return value


def _parse_opt_in(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(
            f"attestation config: allowUnenforcedMeasurements must be true or false, got {str(value)[:20]!r}"
        )
    return value


def _parse_pem(obj: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"attestation config: {key} must be a PEM string")
    value = value.strip()
    if not value:
        if required:
            raise ConfigError(f"attestation config: missing field {key!r} (the AMD root certificate, PEM)")
        return ""
    if not value.startswith("-----BEGIN CERTIFICATE-----"):
        raise ConfigError(f"attestation config: {key} is not a PEM certificate")
    return value


def _parse_ak_names(value: Any) -> tuple[bytes, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 64:
        raise ConfigError("acceptedAttestationKeys must be a list of at most 64 hex TPM names")
    names = []
    for item in value:
        try:
            name = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            name = b""
        if len(name) not in (22, 34, 50, 66):  # 2-byte nameAlg + SHA-1/256/384/512 digest
            raise ConfigError(f"acceptedAttestationKeys: {str(item)[:80]!r} is not a hex TPM name (e.g. 000b…)")
        names.append(name)
    return tuple(names)


def _parse_firmware_signer(value: Any) -> FirmwareSignerConfig:
    if not isinstance(value, Mapping):
        raise ConfigError("attestation config: missing or malformed field 'firmwareSignerConfig'")
    digests_raw = value.get("acceptedKeyDigests")
    if not isinstance(digests_raw, list) or len(digests_raw) > 256:
        raise ConfigError("firmwareSignerConfig.acceptedKeyDigests must be a list of hex SHA-384 digests")
    digests = []
    for item in digests_raw:
        try:
            digest = bytes.fromhex(item) if isinstance(item, str) else b""
        except ValueError:
            digest = b""
        if len(digest) != 48:
            raise ConfigError(
                f"firmwareSignerConfig.acceptedKeyDigests: {str(item)[:100]!r} is not 96 hex characters (SHA-384)"
            )
        digests.append(digest)
    policy_raw = value.get("enforcementPolicy")
    try:
        policy = EnforcementPolicy(policy_raw)
    except ValueError:
        raise ConfigError(
            "firmwareSignerConfig.enforcementPolicy must be one of equal, maaFallback, warnOnly; "
            f"got {policy_raw!r:.40}"
        ) from None
    maa_url = value.get("maaURL", "")
    if not isinstance(maa_url, str):
        raise ConfigError("firmwareSignerConfig.maaURL must be a string")
    if policy is EnforcementPolicy.MAA_FALLBACK and not maa_url:
        raise ConfigError("firmwareSignerConfig.maaURL is required for enforcementPolicy maaFallback")
    return FirmwareSignerConfig(tuple(digests), policy, maa_url)
