"""SNP policy rules that no test checked (mutation survivors of snp/policy.py).

* ``maaFallback`` is *not* warn-only when the policy comes from a config: only the azure-sev-snp
  validator, which then checks an MAA token, may let a foreign ID-key digest through. The CLI path
  (``starlock-verify snp-report --config``) has no MAA token and must reject (vector
  azure-snp/constellation-azure-snp-2023, MANIFEST: REJECT when its digest 57e229e0… is not
  accepted).
* The minimum guest-policy ABI version compares major *and* minor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_snp_policy import make, rejects

from starlock.attestation.cli import main
from starlock.attestation.config import (
    AttestationConfig,
    EnforcementPolicy,
    FirmwareSignerConfig,
    SnpVersions,
)
from starlock.attestation.errors import PolicyViolation
from starlock.attestation.measurements import Measurements
from starlock.attestation.snp import Product, SnpPolicy
from starlock.attestation.snp.testing import SyntheticAmd
from starlock.attestation.variant import Variant

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configs"
AZURE = "azure-snp/constellation-azure-snp-2023"
DIGEST = b"\x33" * 48


@pytest.fixture(scope="module")
def amd() -> dict[Product, SyntheticAmd]:
    return {Product.MILAN: SyntheticAmd.generate(Product.MILAN)}


def _config(policy: EnforcementPolicy) -> AttestationConfig:
    return AttestationConfig(
        variant=Variant.AZURE_SEV_SNP,
        measurements=Measurements.from_obj({"4": "aa" * 32}),
        snp_versions=SnpVersions(3, 0, 8, 115),
        firmware_signer=FirmwareSignerConfig(
            (DIGEST,), policy, "https://maa.example" if policy.name == "MAA_FALLBACK" else ""
        ),
    )


@pytest.mark.parametrize(
    ("policy", "warn_only"),
    [(EnforcementPolicy.EQUAL, False), (EnforcementPolicy.MAA_FALLBACK, False), (EnforcementPolicy.WARN_ONLY, True)],
)
def test_enforcement_policy_from_config(policy: EnforcementPolicy, warn_only: bool) -> None:
    assert SnpPolicy.from_config(_config(policy)).id_key_digest_warn_only is warn_only


def test_maa_fallback_config_rejects_a_foreign_id_key_without_maa(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd, id_key_digest=b"\x11" * 48)
    error = rejects(
        built, SnpPolicy.from_config(_config(EnforcementPolicy.MAA_FALLBACK)), PolicyViolation, "id-key-digest"
    )
    assert f"expected one of [{DIGEST.hex()}], got {'11' * 48}" in str(error)
    # Control: the accepted digest passes under the same policy.
    make(amd, id_key_digest=DIGEST).verify(SnpPolicy.from_config(_config(EnforcementPolicy.MAA_FALLBACK)))


def _azure_cli(vectors: Path, tmp_path: Path, policy: str) -> list[str]:
    report = tmp_path / "report.bin"
    report.write_bytes((vectors / AZURE / "attestation.bin").read_bytes()[:0x4A0])
    config = json.loads((DOCS / "evidence" / "azure-sev-snp-constellation-2023.json").read_text())
    signer = config["firmwareSignerConfig"]
    signer["acceptedKeyDigests"] = [d for d in signer["acceptedKeyDigests"] if not d.startswith("57e229e0")]
    signer["enforcementPolicy"] = policy
    signer["maaURL"] = "https://sharedeus.eus.attest.azure.net"
    path = tmp_path / f"{policy}.json"
    path.write_text(json.dumps(config))
    return [
        "snp-report",
        str(report),
        "--signer",
        str(vectors / AZURE / "vcek.pem"),
        "--chain",
        str(vectors / AZURE / "certchain.pem"),
        "--variant",
        "azure-sev-snp",
        "--config",
        str(path),
        "--json",
    ]


def test_cli_with_maa_fallback_config_rejects_the_unlisted_id_key(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_azure_cli(vectors, tmp_path, "maaFallback")) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["checks"][-1]["name"], out["checks"][-1]["status"]) == ("id-key-digest", "fail")
    assert "57e229e0" in out["checks"][-1]["detail"]
    # Control: warnOnly is the one policy that lets it through, as a WARN row.
    assert main(_azure_cli(vectors, tmp_path, "warnOnly")) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"name": "id-key-digest", "status": "warn"}.items() <= next(
        c for c in out["checks"] if c["name"] == "id-key-digest"
    ).items()


# --- minimum ABI version ------------------------------------------------------------------------


def _abi_policy(major: int, minor: int) -> int:
    return 0x30000 | major << 8 | minor  # bit 17 (reserved, 1) and SMT set; ABI in bits 0..15


@pytest.mark.parametrize(
    ("abi", "minimum"),
    [((0, 31), (0, 32)), ((2, 5), (2, 6)), ((0, 0), (0, 1)), ((1, 255), (2, 0))],
    ids=["0.31<0.32", "2.5<2.6", "0.0<0.1", "1.255<2.0"],
)
def test_minimum_abi_minor_is_enforced(
    amd: dict[Product, SyntheticAmd], abi: tuple[int, int], minimum: tuple[int, int]
) -> None:
    built = make(amd, policy=_abi_policy(*abi))
    error = rejects(built, SnpPolicy(minimum_abi=minimum), PolicyViolation, "guest-policy.abi")
    assert f"expected at least {minimum[0]}.{minimum[1]}, got {abi[0]}.{abi[1]}" in str(error)
    built.verify(SnpPolicy(minimum_abi=abi))  # exactly the minimum passes


@pytest.mark.parametrize(("abi", "minimum"), [((1, 0), (0, 32)), ((3, 1), (2, 200)), ((2, 7), (2, 6))])
def test_higher_abi_passes_whatever_its_minor(
    amd: dict[Product, SyntheticAmd], abi: tuple[int, int], minimum: tuple[int, int]
) -> None:
    make(amd, policy=_abi_policy(*abi)).verify(SnpPolicy(minimum_abi=minimum))
