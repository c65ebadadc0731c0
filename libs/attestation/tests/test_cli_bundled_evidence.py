"""starlock-verify checks the published Azure and AWS evidence with the configs in docs/configs.

Vectors and MANIFEST expectations:
* azure-snp/constellation-azure-snp-2023: ACCEPT when the accepted ID-key digests include
  57e229e0…; REJECT under Equal without it.
* aws-snp/constellation-aws-vlek-2025-05: ACCEPT inside the VLEK's validity; REJECT at today's
  date (the VLEK expired).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from starlock.attestation.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configs"
AZURE = "azure-snp/constellation-azure-snp-2023"
AWS = "aws-snp/constellation-aws-vlek-2025-05"


@pytest.fixture
def azure_report(vectors: Path, tmp_path: Path) -> Path:
    report = tmp_path / "report.bin"
    report.write_bytes((vectors / AZURE / "attestation.bin").read_bytes()[:0x4A0])
    return report


def _azure(vectors: Path, report: Path, config: Path) -> list[str]:
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
        str(config),
        "--json",
    ]


def test_azure_capture_accepted_with_its_evidence_config(
    vectors: Path, azure_report: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = DOCS / "evidence" / "azure-sev-snp-constellation-2023.json"
    assert main(_azure(vectors, azure_report, config)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] is True
    assert out["claims"]["id_key_digest"].startswith("57e229e0")


def test_azure_capture_rejected_when_its_id_key_is_not_accepted(
    vectors: Path, azure_report: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads((DOCS / "evidence" / "azure-sev-snp-constellation-2023.json").read_text())
    digests = config["firmwareSignerConfig"]["acceptedKeyDigests"]
    config["firmwareSignerConfig"]["acceptedKeyDigests"] = [d for d in digests if not d.startswith("57e229e0")]
    path = tmp_path / "equal-without-57e2.json"
    path.write_text(json.dumps(config))
    assert main(_azure(vectors, azure_report, path)) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["checks"][-1]["name"] == "id-key-digest"
    assert "57e229e0" in out["checks"][-1]["detail"]


def test_azure_capture_rejected_by_the_generic_example_config(
    vectors: Path, azure_report: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example config expects a newer launch TCB than this 2023 capture has."""
    assert main(_azure(vectors, azure_report, DOCS / "azure-sev-snp.json")) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["checks"][-1]["name"] == "launch-tcb-minimum"


@pytest.mark.parametrize(("at", "code"), [("2025-06-01T00:00:00Z", 0), ("2026-11-25T00:00:00Z", 1)])
def test_aws_vlek_capture_inside_and_after_its_validity(
    vectors: Path, at: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "snp-report",
        str(vectors / AWS / "report.txt"),
        "--signer",
        str(vectors / AWS / "vlek.pem"),
        "--chain",
        str(vectors / AWS / "certchain.pem"),
        "--variant",
        "aws-sev-snp",
        "--config",
        str(DOCS / "evidence" / "aws-sev-snp-constellation-2025.json"),
        "--at",
        at,
        "--json",
    ]
    assert main(args) == code
    out = json.loads(capsys.readouterr().out)
    if code == 1:
        assert out["checks"][-1]["name"] == "certificate-validity"


def test_config_needs_variant(vectors: Path, azure_report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _azure(vectors, azure_report, DOCS / "azure-sev-snp.json")
    i = args.index("--variant")
    del args[i : i + 2]
    assert main(args) == 2
    assert "--config and --variant go together" in capsys.readouterr().err
