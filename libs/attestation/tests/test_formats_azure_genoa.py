"""azure-sev-snp accepts Genoa (upstream hard-codes Milan), tested with the synthetic AMD hierarchy
(snp.testing): a Genoa ARK/ASK/VCEK; a Genoa VCEK under a Milan chain is rejected; Milan still works."""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from test_tpm_quote import rsa_key
from test_variant_azure_snp import instance_info
from test_variant_common import make_document

from starlock.attestation import Variant, load_attestation_config
from starlock.attestation.azure import AzureSevSnpValidator
from starlock.attestation.errors import AttestationError
from starlock.attestation.snp import Product, SigningKey, TcbParts, TcbVersion
from starlock.attestation.snp.testing import SyntheticAmd, build_report, sign_report

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
PEM = serialization.Encoding.PEM
CPUID = {Product.MILAN: (0x19, 0x01, 1), Product.GENOA: (0x19, 0x11, 1)}


def _document(amd: SyntheticAmd, signer_amd: SyntheticAmd, version: int) -> tuple[bytes, Any]:
    import base64

    parts = TcbParts(bootloader=3, tee=0, snp=8, microcode=115)
    vcek, vcek_key = signer_amd.issue(SigningKey.VCEK, parts)
    ak = rsa_key()
    n = ak.public_key().public_numbers()
    jwk = {
        "kid": "HCLAkPub",
        "kty": "RSA",
        "e": base64.urlsafe_b64encode(n.e.to_bytes(3, "big")).rstrip(b"=").decode(),
        "n": base64.urlsafe_b64encode(n.n.to_bytes(256, "big")).rstrip(b"=").decode(),
    }
    runtime = json.dumps({"keys": [jwk]}).encode()
    tcb = TcbVersion.compose(parts)
    raw = build_report(
        version=version,
        current_tcb=tcb,
        reported_tcb=tcb,
        report_data=hashlib.sha256(runtime).digest() + bytes(32),
        id_key_digest=b"\x07" * 48,
        chip_id=bytes(range(64)),
        cpuid=CPUID[signer_amd.product] if version >= 3 else (0, 0, 0),
    )
    info = instance_info(sign_report(raw, vcek_key), vcek.public_bytes(PEM), amd.ask.public_bytes(PEM), runtime)
    return make_document(ak, nonce=b"n1", instance_info=info), amd


def _validator(arks: list[SyntheticAmd]) -> AzureSevSnpValidator:
    cfg = {
        "measurements": {},
        "bootloaderVersion": 3,
        "teeVersion": 0,
        "snpVersion": 8,
        "microcodeVersion": 115,
        "amdRootKey": "".join(a.ark.public_bytes(PEM).decode() for a in arks),
        "firmwareSignerConfig": {"acceptedKeyDigests": ["07" * 48], "enforcementPolicy": "equal"},
    }
    config = load_attestation_config(cfg, Variant.AZURE_SEV_SNP, allow_unenforced=True)
    return AzureSevSnpValidator(config, at=NOW)


@pytest.fixture(scope="module")
def hierarchies() -> dict[Product, SyntheticAmd]:
    return {p: SyntheticAmd.generate(p) for p in (Product.MILAN, Product.GENOA)}


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("product", [Product.GENOA, Product.MILAN])
def test_genoa_and_milan_accepted(hierarchies: dict[Product, SyntheticAmd], product: Product, version: int) -> None:
    amd = hierarchies[product]
    raw, _ = _document(amd, amd, version)
    validator = _validator(list(hierarchies.values()))  # one config ARK bundle serves both lines
    report = validator.evaluate(raw, b"n1")
    assert report.accepted, report.error
    assert report.claims.get("pcrs") is not None
    rows = {c.name: c.detail for c in report.checks}
    assert rows["snp.product"].startswith(product.value)


def test_genoa_vcek_under_milan_chain_rejected(hierarchies: dict[Product, SyntheticAmd]) -> None:
    raw, _ = _document(hierarchies[Product.MILAN], hierarchies[Product.GENOA], 3)
    report = _validator([hierarchies[Product.MILAN]]).evaluate(raw, b"n1")
    assert not report.accepted and isinstance(report.error, AttestationError)
    assert report.checks[-1].name.startswith("snp.")


def test_genoa_needs_the_genoa_ark(hierarchies: dict[Product, SyntheticAmd]) -> None:
    genoa = hierarchies[Product.GENOA]
    raw, _ = _document(genoa, genoa, 3)
    report = _validator([hierarchies[Product.MILAN]]).evaluate(raw, b"n1")
    assert not report.accepted and "ARK-Genoa" in str(report.error)
