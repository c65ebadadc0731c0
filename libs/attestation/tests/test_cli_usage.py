"""starlock-verify: bad usage and unreadable input exit with 2 and a one-line reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from starlock.attestation.cli import main

CONFIG = {"measurements": {"0": {"expected": "00" * 32, "warnOnly": False}}}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    doc = tmp_path / "doc.json"
    doc.write_text('{"Attestation": {}}')
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    return doc, cfg


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--variant", "nope"], "unknown attestation variant 'nope'"),
        (["--variant", "qemu-vtpm", "--nonce", "xyz"], "--nonce must be hex"),
        (["--variant", "qemu-vtpm", "--at", "yesterday"], "not an RFC 3339 time"),
        (["--variant", "qemu-vtpm", "--at", "2026-11-25T12:00:00"], "needs a time zone"),
        (["--variant", "aws-sev-snp"], "missing field 'bootloaderVersion'"),
        (["--variant", "azure-tdx"], "not supported by Starlock"),
    ],
)
def test_usage_errors(
    files: tuple[Path, Path], extra: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc, cfg = files
    code = main(["document", str(doc), "--config", str(cfg), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert reason in err
    assert err.count("\n") == 1


def test_unreadable_document(tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, cfg = files
    code = main(["document", str(tmp_path / "missing.json"), "--variant", "qemu-vtpm", "--config", str(cfg)])
    assert code == 2
    assert "cannot read document" in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["document"])
    assert excinfo.value.code == 2
    assert "required" in capsys.readouterr().err


def test_malformed_document_is_a_rejection(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    doc, cfg = files
    doc.write_text('{"Attestation": {"ak_pub": "not base64!"}}')
    code = main(["document", str(doc), "--variant", "qemu-vtpm", "--config", str(cfg), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["accepted"] is False
    assert out["checks"][-1]["name"] == "document"
    assert out["checks"][-1]["status"] == "fail"
