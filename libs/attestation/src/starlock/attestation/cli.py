"""``starlock-verify``: verify attestation evidence from the command line.

``document`` checks a vTPM attestation document against a variant's config (also Trustee's
az-snp-vtpm evidence JSON and go-tpm-tools' binary attestation); ``snp-report`` checks a raw AMD
SEV-SNP report (binary, hex or base64; an extended report with its certificate table; an Azure HCL
report) against its VCEK/VLEK and the AMD chain, whose ARK must be pinned; ``quote`` checks a bare
TPM quote under an AK and a nonce.

Every check that was not made (no nonce, an unpinned AK, no enforced measurement, an SNP report
without expected report data or measurement) is a WARN row; ``--strict`` turns any WARN row into a
rejection.

Exit codes: 0 accepted, 1 rejected (evidence that parses but fails a check), 2 bad usage or input
that is not recognisable evidence (empty, garbage, the wrong kind of file): a one-line reason on
stderr saying what the input is and what to pass instead.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from starlock.attestation._cliutil import (
    EXIT_ACCEPTED,
    EXIT_REJECTED,
    EXIT_USAGE,
    STRICT_HELP,
    UsageError,
    check_json_syntax,
    parse_time,
    read_input,
    strict_failure,
)
from starlock.attestation.config import load_attestation_config
from starlock.attestation.errors import AttestationError
from starlock.attestation.formats._report import FormatReport
from starlock.attestation.interfaces import CheckStatus, EvaluationReport
from starlock.attestation.validators import validator_for
from starlock.attestation.variant import Variant

__all__ = ["main"]

MAX_INPUT_SIZE = 4 * 1024 * 1024


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="starlock-verify",
        description="Verify Constellation-compatible attestation evidence offline.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('starlock-attestation')}"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    doc = sub.add_parser(
        "document",
        help="verify an attestation document against an attestation config",
        description="Verify a vTPM attestation document (JSON) for a variant against its attestation config.",
    )
    doc.add_argument(
        "file",
        help="attestation document (JSON), Trustee az-snp-vtpm evidence (JSON) or a go-tpm-tools binary "
        "attestation; '-' for standard input",
    )
    doc.add_argument("--variant", help="attestation variant, e.g. qemu-vtpm (required for JSON documents)")
    doc.add_argument("--config", help="attestation config of the variant (JSON or YAML; required for JSON documents)")
    doc.add_argument(
        "--nonce", help="the nonce the document must be bound to, hex; without it freshness is not checked"
    )
    doc.add_argument("--at", help="verification time, RFC 3339 (default: now)")
    doc.add_argument(
        "--allow-unenforced",
        action="store_true",
        help="accept a config that enforces no measurement (then any PCR values pass; reported as a WARN row)",
    )
    doc.add_argument("--strict", action="store_true", help=STRICT_HELP)
    doc.add_argument("--json", action="store_true", help="print a JSON report instead of a table")
    from starlock.attestation.formats._cli import add_document_options, add_quote_parser
    from starlock.attestation.snp._cli import add_snp_report_parser

    add_document_options(doc)
    add_snp_report_parser(sub)
    add_quote_parser(sub)
    return parser


def _read(path: str, what: str) -> bytes:
    return read_input(path, what, MAX_INPUT_SIZE)


def _run_document(args: argparse.Namespace) -> EvaluationReport | FormatReport:
    from starlock.attestation.formats._cli import CONSTELLATION, classify_document, run_foreign_document

    nonce: bytes | None = None
    if args.nonce is not None:
        try:
            nonce = bytes.fromhex(args.nonce)
        except ValueError:
            raise UsageError("--nonce must be hex") from None
        if not nonce:
            raise UsageError("--nonce is empty")
    at = parse_time(args.at)
    document = _read(args.file, "document")
    kind = classify_document(document, args.file)
    if kind != CONSTELLATION:
        return run_foreign_document(args, kind, document, nonce)
    if args.variant is None or args.config is None:
        raise UsageError("a Constellation attestation document needs --variant and --config")
    try:
        variant = Variant.from_string(args.variant)
    except AttestationError as exc:
        raise UsageError(str(exc)) from None
    raw_config = _read(args.config, "config")
    check_json_syntax(raw_config, f"config {args.config}")
    try:
        config = load_attestation_config(raw_config, variant, allow_unenforced=args.allow_unenforced)
        validator = validator_for(config, at=at)
    except AttestationError as exc:
        raise UsageError(str(exc)) from None
    return validator.evaluate(document, nonce)


def _report_json(report: EvaluationReport, strict: str | None) -> dict[str, Any]:
    error = None if report.error is None else f"{type(report.error).__name__}: {report.error}"
    return {
        "accepted": report.accepted and strict is None,
        "variant": report.variant.value,
        "checks": [{"name": c.name, "status": c.status.value, "detail": c.detail} for c in report.checks],
        "claims": dict(report.claims),
        "warnings": list(report.warnings),
        "error": error if error is not None else strict,
    }


def _print_table(report: EvaluationReport, out: TextIO, strict: str | None) -> None:
    width = max([len(c.name) for c in report.checks] + [5])
    out.write(f"Attestation variant: {report.variant.value}\n\n")
    out.write(f"{'CHECK':<{width}}  {'STATUS':<6}  DETAIL\n")
    for check in report.checks:
        out.write(f"{check.name:<{width}}  {check.status.value.upper():<6}  {check.detail}\n")
    out.write("\n")
    if "ak_name" in report.claims:
        out.write(f"AK name:   {report.claims['ak_name']}\n")
    if "user_data" in report.claims:
        out.write(f"User data: {report.claims['user_data']}\n")
    warns = sum(1 for c in report.checks if c.status is CheckStatus.WARN)
    if strict is not None:
        out.write(f"Result:    REJECTED ({strict})\n")
        return
    verdict = "ACCEPTED" if report.accepted else "REJECTED"
    out.write(f"Result:    {verdict} ({warns} warning{'s' if warns != 1 else ''})\n")


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _build_parser().parse_args(raw)
    except SystemExit as exc:
        if "--json" in raw and exc.code not in (0, None):  # a JSON reader still gets JSON
            json.dump({"accepted": False, "error": "usage error (see stderr)"}, sys.stdout)
            sys.stdout.write("\n")
        raise
    try:
        return _main(args)
    except KeyboardInterrupt:
        sys.stderr.write("starlock-verify: interrupted\n")
        return 130


def _main(args: argparse.Namespace) -> int:
    if args.command == "snp-report":
        from starlock.attestation.snp._cli import run_snp_report

        return run_snp_report(args)
    from starlock.attestation.formats._cli import print_report, run_quote

    try:
        report = run_quote(args) if args.command == "quote" else _run_document(args)
    except UsageError as exc:
        sys.stderr.write(f"starlock-verify: {exc}\n")
        return EXIT_USAGE
    if isinstance(report, FormatReport):
        return print_report(report, args)
    strict = strict_failure(report.checks) if args.strict and report.accepted else None
    if args.json:
        json.dump(_report_json(report, strict), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(report, sys.stdout, strict)
    if not report.accepted or strict is not None:
        sys.stderr.write(f"starlock-verify: rejected: {report.error if strict is None else strict}\n")
        return EXIT_REJECTED
    return EXIT_ACCEPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
