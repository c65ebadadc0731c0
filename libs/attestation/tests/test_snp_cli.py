"""``starlock-verify snp-report``: the raw-report path, same output shape and exit codes as ``document``.

Vectors (MANIFEST expectations): snp/trustee-milan-vcek (ACCEPT), snp/gosevguest-milan-vcek (DEBUG
policy: REJECT unless --allow-debug), aws-snp/* (.hex and base64 report files; EXPIRED VLEKs:
ACCEPT inside the VLEK window, REJECT today), azure-snp/constellation-azure-snp-2023 (1204-byte
file: the trailer is not a certificate table).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from starlock.attestation.cli import main
from starlock.attestation.snp._cli import decode_evidence_bytes

ROOTS = "other/amd-kds-roots"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(["snp-report", *argv, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out else None, out.err


def test_accepts_a_raw_report(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = vectors / "snp/trustee-milan-vcek"
    code, doc, err = run(
        [
            str(t / "test-report.bin"),
            "--signer",
            str(t / "test-vcek.der"),
            "--chain",
            str(vectors / ROOTS / "ask_ark_milan.pem"),
            "--report-data",
            "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2",
            "--measurement",
            "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
            "--vmpl",
            "0",
            "--product",
            "Milan",
        ],
        capsys,
    )
    assert code == 0, err
    assert set(doc) == {"accepted", "variant", "checks", "claims", "warnings", "error"}
    assert doc["accepted"] is True and doc["variant"] == "sev-snp-report" and doc["error"] is None
    assert doc["claims"]["product"] == "Milan" and doc["claims"]["root"]["pinned"] is True
    names = [c["name"] for c in doc["checks"]]
    assert {"report-signature", "certificate-chain", "report-data", "measurement", "vmpl"} <= set(names)


def test_table_output_and_debug_policy(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = vectors / "snp/gosevguest-milan-vcek"
    args = [
        "snp-report",
        str(g / "attestation.bin"),
        "--signer",
        str(g / "vcek.testcer"),
        "--chain",
        str(g / "milan.testcer"),
    ]
    assert main(args) == 1
    out = capsys.readouterr()
    assert re.search(r"guest-policy.debug +FAIL", out.out) and "Result:    REJECTED" in out.out
    assert out.err.startswith("starlock-verify: rejected: guest policy 0xb0000") and out.err.count("\n") == 1
    assert main([*args, "--allow-debug"]) == 0
    # Accepted, with a WARN row for each expectation not given (see test_cli_strict.py).
    out = capsys.readouterr().out
    assert "Result:    ACCEPTED (3 warnings)" in out
    for name in ("report-data", "measurement", "launch-tcb-minimum"):
        assert re.search(rf"^{name} +WARN +not checked", out, re.MULTILINE), name


@pytest.mark.parametrize(("at", "code"), [("2025-06-01T00:00:00Z", 0), ("2026-11-25T00:00:00Z", 1)])
def test_base64_report_with_vlek(vectors: Path, capsys: pytest.CaptureFixture[str], at: str, code: int) -> None:
    w = vectors / "aws-snp/constellation-aws-vlek-2025-05"
    got, doc, _ = run(
        [str(w / "report.txt"), "--signer", str(w / "vlek.pem"), "--chain", str(w / "certchain.pem"), "--at", at],
        capsys,
    )
    assert got == code
    if code:
        assert doc["checks"][-1]["name"] == "certificate-validity" and "has expired" in doc["error"]
    else:
        assert doc["claims"]["signing_key"] == "VLEK"


def test_hex_extended_report_takes_the_signer_from_the_cert_table(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = vectors / "aws-snp/constellation-aws-2023-06-extreport"
    chain = ["--chain", str(vectors / ROOTS / "ask_ark_milan_vlek.pem"), "--at", "2023-10-01T00:00:00Z"]
    code, doc, err = run([str(x / "report_valid.hex"), "--cert-table", str(x / "certs_valid.hex"), *chain], capsys)
    assert code == 0, err
    # the same as one extended-report file (report then table), hex
    joined = tmp_path / "ext.hex"
    joined.write_text((x / "report_valid.hex").read_text() + "\n" + (x / "certs_valid.hex").read_text())
    assert run([str(joined), *chain], capsys)[0] == 0
    code, doc, _ = run([str(x / "report_invalid.hex"), "--cert-table", str(x / "certs_valid.hex"), *chain], capsys)
    assert code == 1 and doc["checks"][-1]["name"] == "report-signature"


def test_trailing_bytes_that_are_no_cert_table_are_bad_input(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not recognisable evidence: exit 2 (issue 16), saying what to pass instead."""
    a = vectors / "azure-snp/constellation-azure-snp-2023"
    code, doc, err = run(
        [str(a / "attestation.bin"), "--signer", str(a / "vcek.pem"), "--chain", str(a / "certchain.pem")], capsys
    )
    assert code == 2 and doc is None
    assert "20 bytes after the report are not a certificate table" in err and "first 1184 bytes" in err


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--report-data", "zz"], "--report-data must be hex"),
        (["--report-data", "00" * 65], "at most 64 bytes"),
        (["--measurement", "00" * 47], "--measurement must be 48 bytes"),
        (["--at", "yesterday"], "not an RFC 3339 time"),
        (["--at", "2026-11-25T12:00:00"], "needs a time zone"),
        (["--product", "Rome"], "--product"),
        (["--min-launch-tcb", "1:2:3"], "BL:TEE:SNP:UCODE"),
        (["--vmpl", "-5"], "--vmpl"),
    ],
)
def test_usage_errors(vectors: Path, capsys: pytest.CaptureFixture[str], extra: list[str], reason: str) -> None:
    t = vectors / "snp/trustee-milan-vcek"
    code = main(["snp-report", str(t / "test-report.bin"), "--signer", str(t / "test-vcek.der"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and reason in err and err.count("\n") == 1


def test_missing_signer_or_chain_is_usage(vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = vectors / "snp/trustee-milan-vcek"
    assert main(["snp-report", str(t / "test-report.bin")]) == 2
    assert "no signer" in capsys.readouterr().err
    assert main(["snp-report", str(t / "test-report.bin"), "--signer", str(t / "test-vcek.der")]) == 2
    assert "no AMD chain" in capsys.readouterr().err
    assert main(["snp-report", str(tmp_path / "nope.bin"), "--signer", str(t / "test-vcek.der")]) == 2
    assert "cannot read report" in capsys.readouterr().err


def test_junk_report_is_bad_input(vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """20 bytes are no report: exit 2 (issue 16), not a rejection."""
    t = vectors / "snp/trustee-milan-vcek"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01" * 10)
    code, doc, err = run(
        [str(junk), "--signer", str(t / "test-vcek.der"), "--chain", str(vectors / ROOTS / "ask_ark_milan.pem")], capsys
    )
    assert code == 2 and doc is None and "20 bytes, an SEV-SNP report has 1184" in err


def test_decode_evidence_bytes() -> None:
    raw = bytes(range(256)) * 5
    assert decode_evidence_bytes(raw.hex().encode() + b"\n") == raw
    import base64

    assert decode_evidence_bytes(base64.b64encode(raw)) == raw
    assert decode_evidence_bytes(base64.urlsafe_b64encode(raw).rstrip(b"=")) == raw
    assert decode_evidence_bytes(raw) == raw
