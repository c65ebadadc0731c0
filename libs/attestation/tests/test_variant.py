"""Variant names and OIDs (reference: spec-attestation §A2, the table of variants)."""

from __future__ import annotations

import pytest

from starlock.attestation import ConfigError, Variant

EXPECTED = {
    "dummy": "1.3.9900.1.1",
    "aws-nitro-tpm": "1.3.9900.2.1",
    "aws-sev-snp": "1.3.9900.2.2",
    "gcp-sev-es": "1.3.9900.3.1",
    "gcp-sev-snp": "1.3.9900.3.2",
    "azure-sev-snp": "1.3.9900.4.1",
    "azure-trustedlaunch": "1.3.9900.4.2",
    "azure-tdx": "1.3.9900.4.3",
    "qemu-vtpm": "1.3.9900.5.1",
    "qemu-tdx": "1.3.9900.5.99",
}


def test_every_variant_and_oid() -> None:
    assert {v.value: v.oid for v in Variant} == EXPECTED


@pytest.mark.parametrize(("name", "oid"), EXPECTED.items())
def test_round_trip(name: str, oid: str) -> None:
    assert Variant.from_string(name).oid == oid
    assert Variant.from_oid(oid).value == name


@pytest.mark.parametrize("bad", ["QEMU-VTPM", "qemu", "", "1.3.9900.5.1"])
def test_unknown_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="unknown attestation variant"):
        Variant.from_string(bad)
