"""Issue 16: the evidence formats a third party holds, and honest exit codes of starlock-verify.

Exit codes: 0 accepted, 1 rejected (evidence that parses but fails a check), 2 bad usage or input
that is not recognisable evidence. Vectors (MANIFEST expectations):
* azure-snp/trustee-az-snp-vtpm-2025-milan: ACCEPT with nonce "challenge" (v0 and v1 forms);
  its HCL report ("HCLA", report size 2346) holds the Milan report; its VCEK under ask_ark_milan.
* snp/gosevguest-milan-vcek: ACCEPT (DEBUG policy: needs --allow-debug) with vcek.testcer + Milan chain.
* gcp-vtpm/gotpmtools-gce-cos85-nonce9009: ACCEPT with nonce 9009; AK cert <- intermediate_2 <- root_1.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from starlock.attestation.azure import parse_hcl_report, parse_runtime_data
from starlock.attestation.cli import main

TRUSTEE = "azure-snp/trustee-az-snp-vtpm-2025-milan"
ROOTS = "other/amd-kds-roots"
GOSEV = "snp/gosevguest-milan-vcek"
COS85 = "gcp-vtpm/gotpmtools-gce-cos85-nonce9009/gce-cos-85-nonce9009.pb"
AT = "2026-11-25T12:00:00Z"
CHALLENGE = b"challenge".hex()
DIGEST = "942fd93ebde6ea7a96efadeafc60f1c6b3d10e703b1dafd7555b92f7f3d32d0e006767648cba5b102af3d65756af4177"
PCR0 = "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.startswith("{") else out.out, out.err


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def v1(vectors: Path) -> dict[str, Any]:
    return json.loads((vectors / TRUSTEE / "evidence-v1.json").read_bytes())


@pytest.fixture
def azure_config(vectors: Path, tmp_path: Path) -> Path:
    milan = (vectors / ROOTS / "ask_ark_milan.pem").read_text()
    ark = milan[milan.index("-----BEGIN", 10) :]
    cfg = {
        "measurements": {"0": {"expected": PCR0, "warnOnly": False}},
        "bootloaderVersion": 4,
        "teeVersion": 0,
        "snpVersion": 24,
        "microcodeVersion": 219,
        "amdRootKey": ark,
        "firmwareSignerConfig": {"acceptedKeyDigests": [DIGEST], "enforcementPolicy": "equal"},
    }
    path = tmp_path / "azure.json"
    path.write_text(json.dumps(cfg))
    return path


# --- exit 2: not recognisable evidence -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "an empty file"),
        (b"\x8f\x13garbage\x00\xff" * 3, "unrecognised binary data"),
        (b"hello, this is not evidence", "text that is not evidence"),
        (b'{"foo": 1}', "a JSON object with keys foo"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "PEM with 1 block (PUBLIC KEY)"),
    ],
)
def test_document_input_that_is_not_evidence_exits_2(
    tmp_path: Path, content: bytes, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "doc"
    doc.write_bytes(content)
    code, out, err = run(["document", str(doc), "--variant", "qemu-vtpm", "--config", str(doc)], capsys)
    assert code == 2 and not out
    assert said in err and "expected a Constellation attestation document" in err and err.count("\n") == 1


def test_report_passed_as_document_exits_2(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = vectors / GOSEV / "attestation.bin"
    code, _, err = run(["document", str(report), "--variant", "qemu-vtpm", "--config", str(report)], capsys)
    assert code == 2 and "size of a raw SEV-SNP report" in err and "starlock-verify snp-report" in err


@pytest.mark.parametrize(
    ("content", "said"),
    [(b"", "an empty file"), (b"\x01\x02garbage", "bytes, an SEV-SNP report has 1184"), (b"{}", "a JSON object")],
)
def test_snp_report_input_that_is_not_a_report_exits_2(
    vectors: Path, tmp_path: Path, content: bytes, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.bin"
    report.write_bytes(content)
    chain = str(vectors / ROOTS / "ask_ark_milan.pem")
    code, out, err = run(
        ["snp-report", str(report), "--signer", str(vectors / GOSEV / "vcek.testcer"), "--chain", chain], capsys
    )
    assert code == 2 and not out and said in err


@pytest.mark.parametrize("flag", ["--signer", "--chain"])
def test_wrong_kind_of_pem_exits_2(
    vectors: Path, tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "key.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    args = {"--signer": str(vectors / GOSEV / "vcek.testcer"), "--chain": str(vectors / ROOTS / "ask_ark_milan.pem")}
    args[flag] = str(pem)
    code, _, err = run(["snp-report", str(vectors / GOSEV / "attestation.bin"), *sum(args.items(), ())], capsys)
    assert code == 2 and "PEM with 1 block (PUBLIC KEY)" in err and "expected AMD certificates" in err


def test_json_config_syntax_error_names_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"Attestation": {}}')
    cfg = tmp_path / "config.json"
    cfg.write_text('{\n  "measurements": {\n    "4": {"expected": "00", "warnOnly": false,}\n  }\n}\n')
    code, _, err = run(["document", str(doc), "--variant", "qemu-vtpm", "--config", str(cfg)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "is not valid JSON: line 3 column" in err


# --- HCL report as snp-report ---------------------------------------------------------------------


def _hcl_args(vectors: Path, tmp_path: Path, hcl: bytes, v1: dict[str, Any]) -> list[str]:
    (tmp_path / "hcl.bin").write_bytes(hcl)
    (tmp_path / "vcek.der").write_bytes(_b64url(v1["vcek"]))
    chain = str(vectors / ROOTS / "ask_ark_milan.pem")
    return ["snp-report", str(tmp_path / "hcl.bin"), "--signer", str(tmp_path / "vcek.der"), "--chain", chain, "--json"]


def test_hcl_report_is_recognised(
    vectors: Path, tmp_path: Path, v1: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    hcl = _b64url(v1["hcl_report"])
    code, out, err = run(_hcl_args(vectors, tmp_path, hcl, v1), capsys)
    assert code == 0, err
    rows = {c["name"]: c for c in out["checks"]}
    assert "Azure HCL report" in rows["hcl-report"]["detail"] and rows["runtime-data-binding"]["status"] == "pass"
    assert out["claims"]["id_key_digest"] == DIGEST


def test_hcl_report_runtime_data_tampered_is_rejected(
    vectors: Path, tmp_path: Path, v1: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    hcl = bytearray(_b64url(v1["hcl_report"]))
    hcl[0x4D4 + 40] ^= 0x01  # a byte of the runtime data JSON: no longer bound by REPORT_DATA
    code, out, _ = run(_hcl_args(vectors, tmp_path, bytes(hcl), v1), capsys)
    assert code == 1 and out["checks"][-1]["name"] == "runtime-data-binding"


@pytest.mark.parametrize(
    ("mutate", "said"),
    [
        (lambda b: b[:0x400], "expected more than 1236"),
        (lambda b: b[:2000], "truncated: 2000 bytes, the header says 2346"),
        (lambda b: b[:8] + struct.pack("<I", 2345) + b[12:], "header report size 2345"),
        (lambda b: b[:0x4C0] + struct.pack("<I", 21) + b[0x4C4:], "IGVM data size 21"),
    ],
)
def test_malformed_hcl_report_exits_2(
    vectors: Path, tmp_path: Path, v1: dict[str, Any], mutate: Any, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(_hcl_args(vectors, tmp_path, mutate(_b64url(v1["hcl_report"])), v1), capsys)
    assert code == 2 and out == "" and said in err


# --- AMD bundles ----------------------------------------------------------------------------------


def _pem(der: bytes) -> bytes:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("flag", ["--signer", "--chain"])
def test_thim_bundle_is_split(vectors: Path, tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        _pem((vectors / GOSEV / "vcek.testcer").read_bytes()) + (vectors / ROOTS / "ask_ark_milan.pem").read_bytes()
    )
    code, out, err = run(
        ["snp-report", str(vectors / GOSEV / "attestation.bin"), flag, str(bundle), "--allow-debug", "--json"], capsys
    )
    assert code == 0, err
    assert out["claims"]["product"] == "Milan"


def test_bundle_with_the_wrong_signer_is_rejected(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another chip's VCEK (the 2023 Azure capture's) in the bundle: the report's signature fails."""
    bundle = tmp_path / "bundle.pem"
    other = (vectors / "azure-snp/constellation-azure-snp-2023/vcek.pem").read_bytes()
    bundle.write_bytes(other + (vectors / ROOTS / "ask_ark_milan.pem").read_bytes())
    code, out, _ = run(
        ["snp-report", str(vectors / GOSEV / "attestation.bin"), "--signer", str(bundle), "--allow-debug", "--json"],
        capsys,
    )
    assert code == 1 and out["checks"][-1]["status"] == "fail"
    assert out["checks"][-1]["name"] in ("report-signature", "reported-tcb", "chip-id")


def test_two_different_signers_exit_2(vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        (vectors / "azure-snp/constellation-azure-snp-2023/vcek.pem").read_bytes()
        + (vectors / ROOTS / "ask_ark_milan.pem").read_bytes()
    )
    code, _, err = run(
        [
            "snp-report",
            str(vectors / GOSEV / "attestation.bin"),
            "--signer",
            str(vectors / GOSEV / "vcek.testcer"),
            "--chain",
            str(bundle),
        ],
        capsys,
    )
    assert code == 2 and "two different VCEK/VLEK" in err


# --- Trustee az-snp-vtpm ---------------------------------------------------------------------------


def _trustee(vectors: Path, evidence: Path, config: Path, nonce: str = CHALLENGE) -> list[str]:
    chain = str(vectors / ROOTS / "ask_ark_milan.pem")
    return [
        "document",
        str(evidence),
        "--variant",
        "azure-sev-snp",
        "--config",
        str(config),
        "--chain",
        chain,
        "--nonce",
        nonce,
        "--at",
        AT,
        "--json",
    ]


@pytest.mark.parametrize("name", ["evidence-v0.json", "evidence-v1.json"])
def test_trustee_evidence_accepted(
    vectors: Path, azure_config: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(_trustee(vectors, vectors / TRUSTEE / name, azure_config), capsys)
    assert code == 0, err
    assert out["format"] == "trustee-az-snp-vtpm" and out["claims"]["pcrs"]["0"] == PCR0
    assert {c["name"] for c in out["checks"]} >= {
        "snp.report-signature",
        "runtime-data-binding",
        "hcl-ak",
        "tpm-quote",
        "measurements",
    }


def test_trustee_wrong_nonce_rejected(vectors: Path, azure_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        _trustee(vectors, vectors / TRUSTEE / "evidence-v1.json", azure_config, b"challengf".hex()), capsys
    )
    assert code == 1 and out["checks"][-1]["name"] == "tpm-quote" and "extraData" in out["error"]


@pytest.mark.parametrize(
    ("field", "mutate", "code", "check"),
    [
        ("signature", lambda q: q | {"signature": "00" + q["signature"][2:]}, 1, "tpm-quote"),
        ("pcrs", lambda q: q | {"pcrs": ["11" * 32, *q["pcrs"][1:]]}, 1, "tpm-quote"),
        ("message", lambda q: q | {"message": q["message"][:-2] + "00"}, 1, "tpm-quote"),
        ("pcrs-count", lambda q: q | {"pcrs": q["pcrs"][:23]}, 2, None),
        ("message-junk", lambda q: q | {"message": "00"}, 2, None),
    ],
)
def test_trustee_tampered_quote(
    vectors: Path,
    azure_config: Path,
    tmp_path: Path,
    v1: dict[str, Any],
    field: str,
    mutate: Any,
    code: int,
    check: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    evidence = tmp_path / "e.json"
    evidence.write_text(json.dumps(v1 | {"tpm_quote": mutate(v1["tpm_quote"])}))
    got, out, err = run(_trustee(vectors, evidence, azure_config), capsys)
    assert got == code, (field, err)
    if check is not None:
        assert out["checks"][-1]["name"] == check and out["accepted"] is False


def test_trustee_tampered_report_or_version(
    vectors: Path, azure_config: Path, tmp_path: Path, v1: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    hcl = bytearray(_b64url(v1["hcl_report"]))
    hcl[0x20 + 0x90] ^= 1  # MEASUREMENT
    evidence = tmp_path / "e.json"
    evidence.write_text(json.dumps(v1 | {"hcl_report": base64.urlsafe_b64encode(bytes(hcl)).decode()}))
    code, out, _ = run(_trustee(vectors, evidence, azure_config), capsys)
    assert code == 1 and out["checks"][-1]["name"] == "snp.report-signature"
    evidence.write_text(json.dumps(v1 | {"version": 7}))
    code, _, err = run(_trustee(vectors, evidence, azure_config), capsys)
    assert code == 2 and "version 7 is not supported" in err


def test_trustee_needs_an_ask(vectors: Path, azure_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _trustee(vectors, vectors / TRUSTEE / "evidence-v1.json", azure_config)
    i = args.index("--chain")
    code, _, err = run(args[:i] + args[i + 2 :], capsys)
    assert code == 2 and "carries no ASK" in err


# --- go-tpm-tools binary attestation ----------------------------------------------------------------


def _gotpm(vectors: Path, tmp_path: Path, *extra: str) -> list[str]:
    roots = tmp_path / "roots.pem"
    g = vectors / "other/gce-ek-ak-roots"
    roots.write_bytes(
        _pem((g / "tpm_ek_root_1.cer").read_bytes()) + _pem((g / "tpm_ek_intermediate_2.crt").read_bytes())
    )
    return ["document", str(vectors / COS85), "--ak-roots", str(roots), "--at", AT, "--json", *extra]


def _maybe_pem(data: bytes) -> bytes:
    return data if data.startswith(b"-----") else _pem(data)


def test_gotpm_attestation_with_ak_certificate(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(_gotpm(vectors, tmp_path, "--nonce", "9009"), capsys)
    assert code == 0, err
    rows = {c["name"]: c["status"] for c in out["checks"]}
    assert (
        out["format"] == "gotpm-attestation" and rows["ak-certificate"] == "pass" and rows["attestation-key"] == "pass"
    )
    assert out["claims"]["ak_name"].startswith("000bf175bdb5")
    code, out, _ = run(_gotpm(vectors, tmp_path, "--nonce", "9008"), capsys)
    assert code == 1 and out["checks"][-1]["name"] == "tpm-quotes"


def test_gotpm_attestation_untrusted_ak(vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "ak.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, out, _ = run(
        ["document", str(vectors / COS85), "--trusted-ak", str(other), "--nonce", "9009", "--json"], capsys
    )
    assert code == 1 and out["checks"][-1]["name"] == "attestation-key"
    g = vectors / "other/gce-ek-ak-roots"
    only_root = tmp_path / "root.pem"
    only_root.write_bytes(_pem((g / "tpm_ek_root_1.cer").read_bytes()))
    code, out, _ = run(
        ["document", str(vectors / COS85), "--ak-roots", str(only_root), "--nonce", "9009", "--at", AT, "--json"],
        capsys,
    )
    assert code == 1 and out["checks"][-1]["name"] == "ak-certificate"


# --- bare quote --------------------------------------------------------------------------------------


@pytest.fixture
def quote_files(tmp_path: Path, v1: dict[str, Any]) -> dict[str, Path]:
    from test_tpm_structures import rsa_signature_bytes

    from starlock.attestation.tpm import algorithms as alg

    hcl = parse_hcl_report(_b64url(v1["hcl_report"]))
    key = parse_runtime_data(hcl.runtime_data).ak_key()
    public = rsa.RSAPublicNumbers(int.from_bytes(key.e, "big"), int.from_bytes(key.n, "big")).public_key()
    files = {"quote": tmp_path / "quote.hex", "sig": tmp_path / "sig.bin", "ak": tmp_path / "ak.pem"}
    files["quote"].write_text(v1["tpm_quote"]["message"])
    files["sig"].write_bytes(
        rsa_signature_bytes(alg.TPM_ALG_RSASSA, alg.TPM_ALG_SHA256, bytes.fromhex(v1["tpm_quote"]["signature"]))
    )
    files["ak"].write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return files


def _quote(files: dict[str, Path], *extra: str) -> list[str]:
    return ["quote", str(files["quote"]), "--signature", str(files["sig"]), "--ak", str(files["ak"]), "--json", *extra]


def test_bare_quote(quote_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(_quote(quote_files, "--nonce", CHALLENGE), capsys)
    assert code == 0, err
    assert out["claims"]["pcr_selection"] == {"SHA256": list(range(24))} and len(out["claims"]["pcr_digest"]) == 64
    code, out, _ = run(_quote(quote_files, "--nonce", b"other".hex()), capsys)
    assert code == 1 and out["checks"][-1]["name"] == "quote-signature" and "extraData" in out["error"]
    code, out, _ = run(_quote(quote_files, "--strict"), capsys)
    assert code == 1 and "--strict" in out["error"]


def test_bare_quote_tampered_or_malformed(quote_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    message = quote_files["quote"].read_text()
    quote_files["quote"].write_text(message[:-2] + ("00" if message[-2:] != "00" else "01"))
    code, _, _ = run(_quote(quote_files, "--nonce", CHALLENGE), capsys)
    assert code == 1
    quote_files["sig"].write_bytes(b"\x01\x02\x03")
    code, _, err = run(_quote(quote_files, "--nonce", CHALLENGE), capsys)
    assert code == 2 and "not a TPMT_SIGNATURE" in err
