"""Attestation configs (reference: spec-attestation §A5)."""

from __future__ import annotations

import json

import pytest

from starlock.attestation import ConfigError, EnforcementPolicy, Variant, load_attestation_config

MEAS = {"0": {"expected": "00" * 32, "warnOnly": False}}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _snp(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "measurements": MEAS,
        "bootloaderVersion": 3,
        "teeVersion": 0,
        "snpVersion": 8,
        "microcodeVersion": 115,
        "amdRootKey": PEM,
    }
    base.update(over)
    return base


def test_qemu_vtpm_json() -> None:
    cfg = load_attestation_config(json.dumps({"measurements": MEAS}), Variant.QEMU_VTPM)
    assert cfg.variant is Variant.QEMU_VTPM
    assert cfg.measurements[0].expected == bytes(32)
    assert cfg.accepted_ak_names == ()


def test_cli_yaml_section_is_picked_by_variant() -> None:
    text = (
        "attestation:\n  qemuVTPM:\n    measurements:\n      4: {expected: '" + "ab" * 32 + "', warnOnly: true}\n"
        "      9: {expected: '" + "cd" * 32 + "', warnOnly: false}\n"
    )
    cfg = load_attestation_config(text, Variant.QEMU_VTPM)
    assert cfg.measurements[4].warn_only is True
    assert cfg.measurements.enforced == (9,)
    with pytest.raises(ConfigError, match="awsNitroTPM"):
        load_attestation_config(text, Variant.AWS_NITRO_TPM)


def test_pinned_attestation_keys() -> None:
    name = "000b" + "11" * 32
    cfg = load_attestation_config({"measurements": MEAS, "acceptedAttestationKeys": [name]}, Variant.QEMU_VTPM)
    assert cfg.accepted_ak_names == (bytes.fromhex(name),)
    with pytest.raises(ConfigError, match="not a hex TPM name"):
        load_attestation_config({"measurements": MEAS, "acceptedAttestationKeys": ["0b"]}, Variant.QEMU_VTPM)


def test_snp_fields() -> None:
    cfg = load_attestation_config(_snp(), Variant.AWS_SEV_SNP)
    assert cfg.snp_versions is not None
    assert (cfg.snp_versions.bootloader, cfg.snp_versions.microcode) == (3, 115)
    assert cfg.amd_root_key_pem.startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"snpVersion": "latest"}, "snpVersion is 'latest'"),
        ({"teeVersion": 256}, "teeVersion must be a number from 0 to 255"),
        ({"teeVersion": True}, "teeVersion must be a number"),
        ({"amdRootKey": ""}, "missing field 'amdRootKey'"),
        ({"amdRootKey": "not pem"}, "amdRootKey is not a PEM certificate"),
        ({"extra": 1}, r"unknown fields \['extra'\]"),
    ],
)
def test_snp_errors(over: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_attestation_config(_snp(**over), Variant.GCP_SEV_SNP)


def test_missing_version_field() -> None:
    cfg = _snp()
    del cfg["microcodeVersion"]
    with pytest.raises(ConfigError, match="missing field 'microcodeVersion'"):
        load_attestation_config(cfg, Variant.AWS_SEV_SNP)


def test_azure_firmware_signer() -> None:
    digest = "57e229e0" + "00" * 44
    cfg = load_attestation_config(
        _snp(firmwareSignerConfig={"acceptedKeyDigests": [digest], "enforcementPolicy": "maaFallback", "maaURL": "x"}),
        Variant.AZURE_SEV_SNP,
    )
    assert cfg.firmware_signer is not None
    assert cfg.firmware_signer.enforcement_policy is EnforcementPolicy.MAA_FALLBACK
    assert cfg.firmware_signer.accepted_key_digests == (bytes.fromhex(digest),)
    with pytest.raises(ConfigError, match="not 96 hex characters"):
        load_attestation_config(
            _snp(firmwareSignerConfig={"acceptedKeyDigests": ["00"], "enforcementPolicy": "equal"}),
            Variant.AZURE_SEV_SNP,
        )
    with pytest.raises(ConfigError, match="must be one of equal"):
        load_attestation_config(
            _snp(firmwareSignerConfig={"acceptedKeyDigests": [], "enforcementPolicy": "Equal"}),
            Variant.AZURE_SEV_SNP,
        )


def test_missing_measurements_and_bad_text() -> None:
    with pytest.raises(ConfigError, match="missing field 'measurements'"):
        load_attestation_config("{}", Variant.QEMU_VTPM)
    with pytest.raises(ConfigError, match="must be an object"):
        load_attestation_config("[1, 2]", Variant.QEMU_VTPM)
    with pytest.raises(ConfigError, match="not supported"):
        load_attestation_config({"measurements": MEAS}, Variant.AZURE_TDX)
