"""``starlock-verify`` adapters for foreign formats: what ``document`` does with input that is not
a Constellation document, and the ``quote`` subcommand. Anything that is not recognisable evidence
is a :class:`UsageError` (exit 2) saying what it is and what to pass instead."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from starlock.attestation._cliutil import (
    EXIT_ACCEPTED,
    EXIT_REJECTED,
    UsageError,
    check_json_syntax,
    parse_time,
    read_input,
    strict_failure,
)
from starlock.attestation.config import AttestationConfig, load_attestation_config
from starlock.attestation.errors import AttestationError, MalformedEvidence
from starlock.attestation.formats._report import FormatReport
from starlock.attestation.formats.amd import is_hcl_report
from starlock.attestation.formats.gotpm import evaluate_gotpm_attestation, parse_gotpm_attestation
from starlock.attestation.formats.quote import parse_ak_public, verify_bare_quote
from starlock.attestation.formats.sniff import describe_input, json_error, looks_like_json, pem_labels
from starlock.attestation.formats.trustee import (
    evaluate_trustee_az_snp_vtpm,
    is_trustee_az_snp_vtpm,
    parse_trustee_az_snp_vtpm,
)
from starlock.attestation.interfaces import Check, CheckStatus
from starlock.attestation.trust import TrustStore, load_certificates
from starlock.attestation.variant import Variant

__all__ = ["add_document_options", "add_quote_parser", "classify_document", "run_foreign_document", "run_quote"]

MAX_INPUT_SIZE = 4 * 1024 * 1024
CONSTELLATION, TRUSTEE, GOTPM = "constellation", "trustee", "gotpm"
_WHAT_DOCUMENT = (
    "expected a Constellation attestation document (JSON with 'Attestation'), Trustee az-snp-vtpm evidence "
    "(JSON) or a go-tpm-tools binary attestation (gotpm attest)"
)


def add_document_options(doc: Any) -> None:
    doc.add_argument("--trusted-ak", help="go-tpm-tools attestation: the trusted AK (PEM public key or TPMT_PUBLIC)")
    doc.add_argument(
        "--ak-cert", help="go-tpm-tools attestation: the AK certificate (PEM or DER); default: the attestation's"
    )
    doc.add_argument(
        "--ak-roots",
        help="go-tpm-tools attestation: PEM bundle of the AK certificate's roots and intermediates (Google's "
        "EK/AK CAs are pinned; any other root is trusted because it is given here, reported as a WARN row)",
    )
    doc.add_argument("--chain", help="Trustee az-snp-vtpm evidence: the AMD ASK + ARK (PEM) when the config has none")


def classify_document(data: bytes, path: str) -> str:
    """Which kind of document ``data`` is; UsageError saying what it is otherwise."""
    if looks_like_json(data):
        error = json_error(data)
        if error is not None:
            raise UsageError(f"document {path} is not valid JSON: {error}")
        obj = json.loads(data)
        if isinstance(obj, dict) and "Attestation" in obj:
            return CONSTELLATION
        if is_trustee_az_snp_vtpm(obj):
            return TRUSTEE
        raise UsageError(f"document {path} is {describe_input(data)}: {_WHAT_DOCUMENT}")
    if data.strip() and not pem_labels(data) and not is_hcl_report(data):
        try:
            parse_gotpm_attestation(data)
            return GOTPM
        except MalformedEvidence:
            pass
    hint = ""
    if is_hcl_report(data) or len(data) in (0x4A0,):
        hint = "; verify a raw SEV-SNP or HCL report with 'starlock-verify snp-report'"
    raise UsageError(f"document {path} is {describe_input(data)}: {_WHAT_DOCUMENT}{hint}")


def _config(args: argparse.Namespace, required: bool) -> AttestationConfig | None:
    if args.config is None and args.variant is None and not required:
        return None
    if args.config is None or args.variant is None:
        raise UsageError("--variant and --config are required for this document")
    try:
        variant = Variant.from_string(args.variant)
    except AttestationError as exc:
        raise UsageError(str(exc)) from None
    raw = read_input(args.config, "config", MAX_INPUT_SIZE)
    check_json_syntax(raw, f"config {args.config}")
    try:
        return load_attestation_config(raw, variant, allow_unenforced=args.allow_unenforced)
    except AttestationError as exc:
        raise UsageError(str(exc)) from None


def _load_certs(path: str, what: str) -> list[Any]:
    data = read_input(path, what, MAX_INPUT_SIZE)
    try:
        return load_certificates(data)
    except MalformedEvidence as exc:
        raise UsageError(f"{what} {path} is {describe_input(data)}, expected certificates: {exc}") from None


def run_foreign_document(args: argparse.Namespace, kind: str, data: bytes, nonce: bytes | None) -> FormatReport:
    at = parse_time(args.at)
    if kind == TRUSTEE:
        config = _config(args, required=True)
        if config is None:
            raise UsageError("Trustee az-snp-vtpm evidence needs --variant azure-sev-snp and --config")
        if config.variant is not Variant.AZURE_SEV_SNP:
            raise UsageError(f"Trustee az-snp-vtpm evidence is verified as azure-sev-snp, not {config.variant.value}")
        try:
            evidence = parse_trustee_az_snp_vtpm(data)
        except MalformedEvidence as exc:
            raise UsageError(f"document {args.file}: Trustee az-snp-vtpm evidence that does not parse: {exc}") from None
        chain = read_input(args.chain, "chain", MAX_INPUT_SIZE) if args.chain else b""
        if not chain and not config.amd_signing_key_pem:
            raise UsageError(
                "Trustee evidence carries no ASK: give --chain (ASK + ARK PEM) or amdSigningKey in --config"
            )
        return evaluate_trustee_az_snp_vtpm(evidence, config, nonce=nonce, at=at, chain=chain)
    att = parse_gotpm_attestation(data)
    config = _config(args, required=False)
    trusted_ak = None
    if args.trusted_ak:
        raw = read_input(args.trusted_ak, "trusted AK", MAX_INPUT_SIZE)
        try:
            trusted_ak = parse_ak_public(raw)
        except MalformedEvidence as exc:
            raise UsageError(f"--trusted-ak {args.trusted_ak} is {describe_input(raw)}: {exc}") from None
    store, warned = _ak_roots(args.ak_roots) if args.ak_roots else (None, [])
    ak_cert = None
    if args.ak_cert:
        ak_cert = read_input(args.ak_cert, "AK certificate", MAX_INPUT_SIZE)
        if store is None:
            raise UsageError("--ak-cert needs --ak-roots (the roots it must chain to)")
    report = evaluate_gotpm_attestation(
        att, nonce=nonce, trusted_ak=trusted_ak, ak_trust=store, ak_cert=ak_cert, config=config, at=at
    )
    if warned:
        rows = tuple(
            Check(
                "ak-roots",
                CheckStatus.WARN,
                f"{name} is not a pinned Google EK/AK CA; trusted because --ak-roots names it",
            )
            for name in warned
        )
        warnings = report.warnings + tuple(f"{c.name}: {c.detail}" for c in rows)
        report = FormatReport(
            report.format, report.accepted, rows + report.checks, report.claims, warnings, report.error
        )
    return report


def _ak_roots(path: str) -> tuple[TrustStore, list[str]]:
    """The --ak-roots bundle as a trust store; the names of the certificates that are not pinned."""
    store, warned = TrustStore(), []
    for cert in _load_certs(path, "AK roots"):
        if not store.is_pinned(cert):
            warned.append(cert.subject.rfc4514_string()[:80])
        store.add(cert, explicitly_trusted=True)
    return store, warned


# --- quote ------------------------------------------------------------------------------------------


def add_quote_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "quote",
        help="verify a bare TPM2_Quote (TPMS_ATTEST + TPMT_SIGNATURE) under an AK and a nonce",
        description="Verify a TPM quote's signature under the AK and its extraData against the nonce; print "
        "the quoted PCR selection and digest. Inputs are binary, hex or base64.",
    )
    cmd.add_argument("quote", help="TPMS_ATTEST (the quote message), '-' for standard input")
    cmd.add_argument("--signature", required=True, help="TPMT_SIGNATURE")
    cmd.add_argument("--ak", required=True, help="AK public key: TPMT_PUBLIC (or TPM2B_PUBLIC), PEM public key or cert")
    cmd.add_argument("--nonce", help="expected extraData, hex; without it the nonce is not checked (a WARN row)")
    cmd.add_argument("--strict", action="store_true", help="treat a WARN row as a rejection: exit 1")
    cmd.add_argument("--json", action="store_true", help="print a JSON report instead of a table")


def run_quote(args: argparse.Namespace) -> FormatReport:
    from starlock.attestation.snp._cli import decode_evidence_bytes
    from starlock.attestation.tpm import parse_tpms_attest, parse_tpmt_signature
    from starlock.attestation.vtpm import CheckRecorder

    def read(path: str, what: str, parse: Any) -> tuple[bytes, Any]:
        raw = read_input(path, what, 64 * 1024)
        data = raw if raw.lstrip().startswith(b"-----BEGIN") else decode_evidence_bytes(raw)
        try:
            return data, parse(data)
        except MalformedEvidence as exc:
            raise UsageError(f"{what} {path} is {describe_input(raw)}, not a {what}: {exc}") from None

    nonce = None
    if args.nonce is not None:
        try:
            nonce = bytes.fromhex(args.nonce)
        except ValueError:
            raise UsageError("--nonce must be hex") from None
    quote, attest = read(args.quote, "TPMS_ATTEST", parse_tpms_attest)
    signature, _ = read(args.signature, "TPMT_SIGNATURE", parse_tpmt_signature)
    _, ak = read(args.ak, "AK public key", parse_ak_public)
    rec = CheckRecorder()
    claims: dict[str, Any] = {"extra_data": attest.extra_data.hex(), "pcr_digest": attest.pcr_digest.hex()}
    try:
        verified = rec.run(
            "quote-signature",
            lambda: verify_bare_quote(quote, signature, ak, nonce),
            lambda v: "signature under the AK verified; TPMS_ATTEST made by a TPM (TPM_GENERATED_VALUE)",
        )
    except AttestationError as exc:
        return FormatReport.finish("tpm-quote", rec, claims, exc)
    if nonce is None:
        rec.add("nonce", CheckStatus.WARN, f"no --nonce given: extraData {attest.extra_data.hex()} not compared")
    else:
        rec.add("nonce", CheckStatus.PASS, f"extraData is the nonce {nonce.hex()}")
    claims["pcr_selection"] = verified.selection()
    rec.add("pcr-digest", CheckStatus.PASS, f"quoted PCRs {verified.selection()}, digest {attest.pcr_digest.hex()}")
    return FormatReport.finish("tpm-quote", rec, claims, None)


def print_report(report: FormatReport, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    strict = strict_failure(report.checks) if getattr(args, "strict", False) and report.accepted else None
    if args.json:
        error = None if report.error is None else f"{type(report.error).__name__}: {report.error}"
        doc = {
            "accepted": report.accepted and strict is None,
            "format": report.format,
            "checks": [{"name": c.name, "status": c.status.value, "detail": c.detail} for c in report.checks],
            "claims": dict(report.claims),
            "warnings": list(report.warnings),
            "error": error if error is not None else strict,
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        width = max([len(c.name) for c in report.checks] + [5])
        out.write(f"Evidence format: {report.format}\n\n{'CHECK':<{width}}  {'STATUS':<6}  DETAIL\n")
        for check in report.checks:
            out.write(f"{check.name:<{width}}  {check.status.value.upper():<6}  {check.detail}\n")
        warns = sum(1 for c in report.checks if c.status is CheckStatus.WARN)
        verdict = "ACCEPTED" if report.accepted else "REJECTED"
        text = f"REJECTED ({strict})" if strict else f"{verdict} ({warns} warning{'s' if warns != 1 else ''})"
        out.write(f"\nResult:    {text}\n")
    if not report.accepted or strict is not None:
        sys.stderr.write(f"starlock-verify: rejected: {report.error if strict is None else strict}\n")
        return EXIT_REJECTED
    return EXIT_ACCEPTED
