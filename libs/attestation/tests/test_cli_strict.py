"""starlock-verify never says ACCEPTED silently about what it did not check.

Review finding: ``document`` and ``snp-report`` could print ACCEPTED having checked almost nothing
(no enforced measurement, an unpinned AK, no nonce; an SNP report without expected report data or
measurement), and the ``nonce`` row said PASS for a wrong nonce. Now every unchecked thing is a
WARN row, ``--strict`` turns WARN rows into a rejection (exit 1), and the nonce row passes only
when the quotes carry the nonce. SNP vectors: snp/gosevguest-milan-vcek (MANIFEST: debug policy,
accepted with --allow-debug), snp/trustee-milan-vcek.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_tpm_eventlog import agile_log, measured
from test_tpm_quote import RSASSA, ak_for, rsa_key
from test_variant_common import make_document

from starlock.attestation.cli import main
from starlock.attestation.snp import parse_report

NONCE = b"\x24" * 32
PCR0 = hashlib.sha256(b"\x00").hexdigest()  # PCR 0 of the synthetic quotes (test_tpm_quote.pcr_values)
AK_NAME = ak_for(rsa_key(), RSASSA).name().hex()


def _files(tmp_path: Path, config: dict[str, Any], *, event_log: bytes = b"") -> list[str]:
    doc = tmp_path / "doc.json"
    doc.write_bytes(make_document(rsa_key(), nonce=NONCE, event_log=event_log))
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    return ["document", str(doc), "--variant", "qemu-vtpm", "--config", str(cfg)]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main([*args, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out else {}, out.err


def _statuses(out: dict[str, Any], name: str) -> list[str]:
    return [c["status"] for c in out["checks"] if c["name"] == name]


ENFORCED = {"measurements": {"0": {"expected": PCR0, "warnOnly": False}}}


def test_document_warn_rows_for_what_was_not_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _files(tmp_path, ENFORCED)
    code, out, _ = _run(args, capsys)  # no nonce, AK not pinned, no event log
    assert code == 0 and out["accepted"] is True
    assert _statuses(out, "nonce") == ["warn"]
    assert _statuses(out, "attestation-key") == ["warn"]
    assert _statuses(out, "event-log") == ["warn"]
    code, out, err = _run([*args, "--strict"], capsys)
    assert code == 1 and out["accepted"] is False
    assert out["error"] == "--strict: 3 warnings (nonce, attestation-key, event-log)"
    assert err == "starlock-verify: rejected: --strict: 3 warnings (nonce, attestation-key, event-log)\n"


def test_document_strict_passes_when_everything_was_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = agile_log(measured(0, b"crtm"))
    config = {**ENFORCED, "acceptedAttestationKeys": [AK_NAME]}
    config["measurements"] = {"5": {"expected": hashlib.sha256(b"\x05").hexdigest(), "warnOnly": False}}
    args = _files(tmp_path, config, event_log=log)
    code, out, err = _run([*args, "--nonce", NONCE.hex(), "--strict"], capsys)
    assert code == 0, err
    assert out["accepted"] is True and out["error"] is None
    assert not [c for c in out["checks"] if c["status"] == "warn"]
    main([*args, "--nonce", NONCE.hex(), "--strict"])
    assert "Result:    ACCEPTED (0 warnings)" in capsys.readouterr().out


def test_document_strict_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_files(tmp_path, ENFORCED), "--nonce", NONCE.hex(), "--strict"]) == 1
    assert "Result:    REJECTED (--strict: 2 warnings (attestation-key, event-log))" in capsys.readouterr().out


@pytest.mark.parametrize(
    "measurements",
    [{}, None, {"0": {"expected": PCR0, "warnOnly": True}}],
    ids=["empty", "null", "warn-only"],
)
def test_document_unenforced_config_needs_the_flag(
    tmp_path: Path, measurements: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.attestation")
    args = [*_files(tmp_path, {"measurements": measurements}), "--nonce", NONCE.hex()]
    code, out, err = _run(args, capsys)
    assert code == 2 and not out
    assert "expected at least one enforced entry" in err and "--allow-unenforced" in err
    assert not caplog.records
    code, out, err = _run([*args, "--allow-unenforced"], capsys)
    assert code == 0 and out["accepted"] is True
    assert "warn" in _statuses(out, "measurements")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "validator enforces no measurement" in caplog.records[0].getMessage()
    code, out, _ = _run([*args, "--allow-unenforced", "--strict"], capsys)
    assert code == 1 and out["accepted"] is False and "measurements" in out["error"]


def test_document_unenforced_warning_reaches_stderr_of_a_real_process(tmp_path: Path) -> None:
    """Run as a process (no logging configured): Python prints the WARNING line on stderr."""
    args = [*_files(tmp_path, {"measurements": {}}), "--nonce", NONCE.hex(), "--allow-unenforced"]
    run = subprocess.run(
        [sys.executable, "-m", "starlock.attestation.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "qemu-vtpm validator enforces no measurement" in run.stderr
    assert "Result:    ACCEPTED" in run.stdout


@pytest.mark.parametrize(
    "nonce",
    [NONCE[:-1], NONCE + b"\x00", NONCE[:1], b"\x25" + NONCE[1:]],
    ids=["truncated", "extended", "prefix", "other"],
)
def test_document_wrong_nonce_row_fails(tmp_path: Path, nonce: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = _run([*_files(tmp_path, ENFORCED), "--nonce", nonce.hex()], capsys)
    assert code == 1 and out["accepted"] is False
    assert _statuses(out, "nonce") == ["fail"]
    assert out["error"].startswith("NonceMismatch")
    code, out, _ = _run([*_files(tmp_path, ENFORCED), "--nonce", NONCE.hex()], capsys)
    assert code == 0 and _statuses(out, "nonce") == ["pass"]


# --- snp-report -------------------------------------------------------------------------------


def _snp_args(vectors: Path) -> list[str]:
    g = vectors / "snp/gosevguest-milan-vcek"
    return [
        "snp-report",
        str(g / "attestation.bin"),
        "--signer",
        str(g / "vcek.testcer"),
        "--chain",
        str(g / "milan.testcer"),
        "--allow-debug",
    ]


def test_snp_report_warn_rows_and_strict(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _snp_args(vectors)
    code, out, _ = _run(args, capsys)
    assert code == 0 and out["accepted"] is True
    warned = {c["name"]: c["detail"] for c in out["checks"] if c["status"] == "warn"}
    assert set(warned) == {"report-data", "measurement", "launch-tcb-minimum"}
    assert all(d.startswith("not checked: no --") for d in warned.values())
    assert len(out["warnings"]) == 3
    code, out, err = _run([*args, "--strict"], capsys)
    assert code == 1 and out["accepted"] is False
    assert out["error"] == "--strict: 3 warnings (report-data, measurement, launch-tcb-minimum)"
    assert err.startswith("starlock-verify: rejected: --strict")


def test_snp_report_strict_passes_with_every_expectation_given(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = parse_report((vectors / "snp/gosevguest-milan-vcek/attestation.bin").read_bytes()[:0x4A0])
    given = [
        "--report-data",
        report.report_data.hex(),
        "--measurement",
        report.measurement.hex(),
        "--min-launch-tcb",
        "0:0:0:0",
    ]
    code, out, err = _run([*_snp_args(vectors), *given, "--strict"], capsys)
    assert code == 0, err
    assert out["accepted"] is True and not [c for c in out["checks"] if c["status"] == "warn"]
    # One missing expectation is enough for --strict to refuse.
    code, out, _ = _run([*_snp_args(vectors), *given[:4], "--strict"], capsys)
    assert code == 1 and out["error"] == "--strict: 1 warning (launch-tcb-minimum)"


def test_snp_report_rejection_keeps_the_failed_row_last(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run([*_snp_args(vectors), "--measurement", "00" * 48, "--strict"], capsys)
    assert code == 1 and out["checks"][-1]["name"] == "measurement" and out["checks"][-1]["status"] == "fail"
