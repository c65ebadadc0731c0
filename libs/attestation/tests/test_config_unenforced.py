"""A config that enforces no measurement is refused unless the caller opts in, loudly.

Review finding: ``{"measurements": {}}``, ``null`` or only ``warnOnly`` entries were accepted
silently, and a qemu-vtpm validator built from them accepted any software TPM. Now the loader and
the validator refuse them with a ConfigError naming the field, unless ``allow_unenforced=True`` (or
the config's own ``"allowUnenforcedMeasurements": true``); the opt-in logs a WARNING and every
report carries a WARN row.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from starlock.attestation import (
    AttestationConfig,
    CheckStatus,
    ConfigError,
    Measurements,
    Variant,
    load_attestation_config,
    validator_for,
)
from starlock.attestation.qemu import QemuVtpmIssuer, QemuVtpmValidator
from starlock.attestation.swtpm import Swtpm

A = "aa" * 32
NONCE = b"\x17" * 32
TPM_ONLY = [Variant.QEMU_VTPM, Variant.AWS_NITRO_TPM, Variant.GCP_SEV_ES, Variant.AZURE_TRUSTED_LAUNCH]
SNP_FIELDS = {
    "bootloaderVersion": 3,
    "teeVersion": 0,
    "snpVersion": 8,
    "microcodeVersion": 115,
    "amdRootKey": "-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----",
}
UNENFORCED: list[Any] = [
    {},
    None,
    {"4": {"expected": A, "warnOnly": True}},
    {"4": {"expected": A, "warnOnly": True}, "9": {"expected": A, "warnOnly": True}},
]
UNENFORCED_IDS = ["empty", "null", "one-warn-only", "two-warn-only"]


def _fields(variant: Variant) -> dict[str, Any]:
    return dict(SNP_FIELDS) if variant in (Variant.AWS_SEV_SNP, Variant.GCP_SEV_SNP) else {}


@pytest.mark.parametrize("measurements", UNENFORCED, ids=UNENFORCED_IDS)
@pytest.mark.parametrize("variant", [*TPM_ONLY, Variant.AWS_SEV_SNP, Variant.GCP_SEV_SNP], ids=str)
def test_loader_refuses_a_config_that_enforces_nothing(variant: Variant, measurements: Any) -> None:
    obj = {"measurements": measurements, **_fields(variant)}
    with pytest.raises(ConfigError) as err:
        load_attestation_config(obj, variant)
    message = str(err.value)
    assert err.value.check == "config"
    assert f"attestation config for {variant.value}: measurements: expected at least one enforced entry" in message
    assert ("warnOnly entries and none enforced" if measurements else "got no entries") in message
    assert "allow_unenforced=True" in message and "allowUnenforcedMeasurements" in message
    if variant is Variant.QEMU_VTPM:
        assert "any software TPM" in message
    # The same text as JSON and as a CLI YAML section is refused the same way.
    with pytest.raises(ConfigError, match="expected at least one enforced entry"):
        load_attestation_config(json.dumps(obj), variant)


def test_one_enforced_entry_is_enough() -> None:
    obj = {"measurements": {"4": {"expected": A, "warnOnly": True}, "9": {"expected": A, "warnOnly": False}}}
    config = load_attestation_config(obj, Variant.QEMU_VTPM)
    assert config.measurements.enforced == (9,) and not config.allow_unenforced


@pytest.mark.parametrize("measurements", UNENFORCED, ids=UNENFORCED_IDS)
def test_opt_in_by_keyword_or_by_the_config_field(measurements: Any) -> None:
    by_kwarg = load_attestation_config({"measurements": measurements}, Variant.QEMU_VTPM, allow_unenforced=True)
    by_field = load_attestation_config(
        {"measurements": measurements, "allowUnenforcedMeasurements": True}, Variant.QEMU_VTPM
    )
    assert by_kwarg.allow_unenforced and by_field.allow_unenforced
    with pytest.raises(ConfigError, match="expected at least one enforced entry"):
        load_attestation_config({"measurements": measurements, "allowUnenforcedMeasurements": False}, Variant.QEMU_VTPM)


@pytest.mark.parametrize("value", ["true", 1, None, "yes"])
def test_opt_in_field_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(ConfigError, match="allowUnenforcedMeasurements must be true or false"):
        load_attestation_config({"measurements": {}, "allowUnenforcedMeasurements": value}, Variant.QEMU_VTPM)


def test_validator_refuses_a_config_built_directly() -> None:
    """The check is not only in the loader: a hand-made AttestationConfig is refused as well."""
    config = AttestationConfig(Variant.QEMU_VTPM, Measurements.from_obj({"4": {"expected": A, "warnOnly": True}}))
    with pytest.raises(ConfigError, match="expected at least one enforced entry"):
        validator_for(config)
    with pytest.raises(ConfigError, match="expected at least one enforced entry"):
        QemuVtpmValidator(config)
    assert isinstance(validator_for(config, allow_unenforced=True), QemuVtpmValidator)


def test_opt_in_logs_a_warning_and_enforced_configs_do_not(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.attestation")
    validator_for(load_attestation_config({"measurements": {"4": A}}, Variant.QEMU_VTPM))
    assert not caplog.records
    validator_for(load_attestation_config({"measurements": {}}, Variant.QEMU_VTPM, allow_unenforced=True))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "qemu-vtpm validator enforces no measurement" in record.getMessage()
    assert "any software TPM" in record.getMessage()


def test_key_given_twice_in_the_config_text_is_refused() -> None:
    text = '{"measurements": {"4": {"expected": "' + A + '", "warnOnly": false}}, "measurements": {}}'
    with pytest.raises(ConfigError, match="'measurements' appears twice"):
        load_attestation_config(text, Variant.QEMU_VTPM)
    yaml_text = (
        f"attestation:\n  qemuVTPM:\n    measurements:\n      4: '{A}'\n      4: {{expected: '{A}', warnOnly: true}}\n"
    )
    with pytest.raises(ConfigError, match="'4' appears twice"):
        load_attestation_config(yaml_text, Variant.QEMU_VTPM)


# --- the point of it: a software TPM ---------------------------------------------------------------


@pytest.fixture
def software_tpm_document(swtpm: Swtpm, tpm2_pytss: Any) -> bytes:
    """A document from a freshly started swtpm: any attacker can make one."""
    return QemuVtpmIssuer(swtpm.tcti, include_event_log=False).issue(b"attacker key hash", NONCE)


def test_software_tpm_passes_only_with_the_opt_in_and_a_warn_row(software_tpm_document: bytes, tmp_path: Path) -> None:
    warn_only = {"measurements": {"15": {"expected": "00" * 32, "warnOnly": True}}}
    with pytest.raises(ConfigError):
        load_attestation_config(warn_only, Variant.QEMU_VTPM)
    validator = validator_for(load_attestation_config(warn_only, Variant.QEMU_VTPM, allow_unenforced=True))
    report = validator.evaluate(software_tpm_document, NONCE)
    assert report.accepted  # exactly why the opt-in must be explicit
    rows = [(c.name, c.status) for c in report.checks]
    assert ("measurements", CheckStatus.WARN) in rows
    warn = next(c.detail for c in report.checks if c.name == "measurements" and c.status is CheckStatus.WARN)
    assert warn.startswith("no enforced measurement (1 warn-only entries): any PCR values are accepted")
    assert any(w.startswith("measurements: no enforced measurement") for w in report.warnings)
    # With one enforced value the same software TPM is refused.
    enforced = {"measurements": {"15": {"expected": "ff" * 32, "warnOnly": False}}}
    assert (
        not validator_for(load_attestation_config(enforced, Variant.QEMU_VTPM))
        .evaluate(software_tpm_document, NONCE)
        .accepted
    )
