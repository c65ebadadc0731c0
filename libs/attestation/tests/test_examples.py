"""The files in libs/attestation/examples load, and the qemu-vtpm example accepts a document
issued from a swtpm after Starlock's synthetic measured boot (and refuses a changed boot)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from starlock.attestation import Variant, load_attestation_config, validator_for
from starlock.attestation.errors import MeasurementMismatch
from starlock.attestation.measured_boot import default_boot_events, golden_measurements, run_synthetic_boot
from starlock.attestation.swtpm import Swtpm

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QEMU_CONFIG = EXAMPLES / "qemu-vtpm-attestation-config.yaml"


def test_examples_readme_names_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    files = sorted(p.name for p in EXAMPLES.iterdir() if p.name != "README.md")
    assert files == ["qemu-vtpm-attestation-config.yaml"]
    assert all(f"`{name}`" in readme for name in files)


def test_qemu_vtpm_example_loads_and_enforces_its_measurements() -> None:
    config = load_attestation_config(QEMU_CONFIG.read_bytes(), Variant.QEMU_VTPM)
    assert config.variant is Variant.QEMU_VTPM
    assert config.measurements.enforced
    assert not config.accepted_ak_names  # the pin is a commented-out example
    # the same text works through the CLI-config form the tools accept
    wrapped = yaml.safe_dump({"attestation": {"qemuVTPM": yaml.safe_load(QEMU_CONFIG.read_text())}})
    assert load_attestation_config(wrapped, Variant.QEMU_VTPM) == config


def test_qemu_vtpm_example_values_are_the_synthetic_boot() -> None:
    """Every value is what the default synthetic boot leaves in that PCR, PCR 15 zero included."""
    golden = golden_measurements(default_boot_events())
    example = yaml.safe_load(QEMU_CONFIG.read_text())["measurements"]
    assert "15" in example and {"0", "4", "8", "9"} <= set(example)
    assert {k: v for k, v in golden.items() if k in example} == example


def test_qemu_vtpm_example_validates_an_issued_document(swtpm: Swtpm, tmp_path: Path) -> None:
    from starlock.attestation.qemu import QemuVtpmIssuer

    log = tmp_path / "eventlog.bin"
    run_synthetic_boot(swtpm.tcti, log)
    nonce = os.urandom(32)
    document = QemuVtpmIssuer(swtpm.tcti, event_log_path=log).issue(b"user data", nonce)
    validator = validator_for(load_attestation_config(QEMU_CONFIG.read_bytes(), Variant.QEMU_VTPM))
    assert validator.validate(document, nonce).user_data == b"user data"


def test_qemu_vtpm_example_refuses_another_boot(swtpm: Swtpm, tmp_path: Path) -> None:
    from starlock.attestation.qemu import QemuVtpmIssuer

    log = tmp_path / "eventlog.bin"
    run_synthetic_boot(swtpm.tcti, log, default_boot_events("console=ttyS0 init=/bin/sh"))
    nonce = os.urandom(32)
    document = QemuVtpmIssuer(swtpm.tcti, event_log_path=log).issue(b"user data", nonce)
    validator = validator_for(load_attestation_config(QEMU_CONFIG.read_bytes(), Variant.QEMU_VTPM))
    expected = yaml.safe_load(QEMU_CONFIG.read_text())["measurements"]["8"]["expected"]
    with pytest.raises(MeasurementMismatch, match=rf"at index 8 \(expected {expected}\)$"):
        validator.validate(document, nonce)
