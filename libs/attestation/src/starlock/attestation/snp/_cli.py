"""``starlock-verify snp-report``: verify a raw SEV-SNP report (the CLI adapter around verify.py).

Output and exit codes are those of ``starlock-verify document``: 0 accepted, 1 rejected, 2 bad
usage or unreadable input; a table, or with ``--json``
``{"accepted", "variant": "sev-snp-report", "checks", "claims", "warnings", "error"}``. An accepted
report gets a WARN row for each expectation that was not given (report data, measurement, minimum
launch TCB): the signature alone proves neither freshness nor what runs. ``--strict`` rejects then.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from typing import Any, TextIO

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from starlock.attestation._cliutil import (
    EXIT_ACCEPTED,
    EXIT_REJECTED,
    EXIT_USAGE,
    STRICT_HELP,
    UsageError,
    parse_time,
    read_input,
    strict_failure,
)
from starlock.attestation.azure.hcl import HclReport, check_runtime_data_binding
from starlock.attestation.config import AttestationConfig, SnpVersions, load_attestation_config
from starlock.attestation.errors import AttestationError, ConfigError, MalformedEvidence
from starlock.attestation.formats.amd import AmdBundle, is_hcl_report, read_hcl_report, split_amd_bundle
from starlock.attestation.formats.sniff import describe_input, looks_like_json, pem_labels
from starlock.attestation.interfaces import Check, CheckStatus
from starlock.attestation.snp.certtable import CertTable, parse_cert_table
from starlock.attestation.snp.policy import SnpPolicy
from starlock.attestation.snp.report import REPORT_SIZE, Product
from starlock.attestation.snp.verify import SnpEvaluation, SnpVerifier
from starlock.attestation.trust import fingerprint, load_certificates
from starlock.attestation.variant import Variant

__all__ = ["VARIANT_NAME", "add_snp_report_parser", "decode_evidence_bytes", "run_snp_report"]

VARIANT_NAME = "sev-snp-report"
MAX_INPUT_SIZE = 1024 * 1024
_SNP_VARIANTS = (Variant.AWS_SEV_SNP, Variant.AZURE_SEV_SNP, Variant.GCP_SEV_SNP)
_SNP_VARIANTS_TEXT = tuple(v.value for v in _SNP_VARIANTS)
_HEX_TEXT = re.compile(rb"[0-9a-fA-F\s]+")
_B64_TEXT = re.compile(rb"[A-Za-z0-9+/=_\-\s]+")
_WHAT_REPORT = (
    "expected a raw SEV-SNP report (1184 bytes; binary, hex or base64), an extended report with its "
    "certificate table, or an Azure HCL report (HCLA); for an attestation document use 'starlock-verify document'"
)


def add_snp_report_parser(sub: Any) -> None:
    cmd = sub.add_parser(
        "snp-report",
        help="verify a raw AMD SEV-SNP attestation report against its VCEK/VLEK and the AMD chain",
        description=(
            "Verify a raw SEV-SNP report (binary, hex or base64 text; an extended report's certificate "
            "table may follow it) with its signer certificate and the AMD chain. The ARK must be one of "
            "the pinned AMD roots."
        ),
    )
    cmd.add_argument("report", help="the report file (binary, hex or base64), '-' for standard input")
    cmd.add_argument("--signer", help="the VCEK or VLEK (PEM or DER); default: the extended report's cert table")
    cmd.add_argument("--chain", help="PEM bundle with the ASK or ASVK and the ARK; default: the cert table")
    cmd.add_argument("--cert-table", help="certificate table (GUID table) of an extended report, binary or hex")
    cmd.add_argument("--product", help="product line (Milan, Genoa, Turin) when the report and signer do not say")
    cmd.add_argument("--at", help="verification time, RFC 3339 (default: now)")
    cmd.add_argument("--report-data", help="expected REPORT_DATA, hex (up to 64 bytes, zero-padded on the right)")
    cmd.add_argument("--measurement", help="expected MEASUREMENT, hex (48 bytes)")
    cmd.add_argument("--vmpl", type=int, default=0, help="required VMPL (default 0); -1 to accept any")
    cmd.add_argument("--allow-debug", action="store_true", help="accept a guest policy that allows debugging")
    cmd.add_argument(
        "--id-key-digest", action="append", default=None, help="accepted ID-key digest, hex (48 bytes); repeatable"
    )
    cmd.add_argument("--min-launch-tcb", help="minimum launch TCB as BL:TEE:SNP:UCODE (e.g. 3:0:8:115)")
    cmd.add_argument(
        "--config",
        help="attestation config of an SNP variant (JSON or YAML; needs --variant): its minimum launch TCB and "
        "accepted ID-key digests become the policy; the options above override it",
    )
    cmd.add_argument("--variant", help="the SNP variant of --config: aws-sev-snp, azure-sev-snp or gcp-sev-snp")
    cmd.add_argument("--strict", action="store_true", help=STRICT_HELP)
    cmd.add_argument("--json", action="store_true", help="print a JSON report instead of a table")


def decode_evidence_bytes(data: bytes) -> bytes:
    """Binary as is; text input that is all hex digits, or base64 (standard or URL-safe), decoded."""
    stripped = data.strip()
    if not stripped or len(data) == REPORT_SIZE:
        return data
    if _HEX_TEXT.fullmatch(stripped):
        try:
            return bytes.fromhex(stripped.decode())
        except ValueError:
            pass
    if _B64_TEXT.fullmatch(stripped):
        text = b"".join(stripped.split())
        try:
            alt = b"-_" if b"-" in text or b"_" in text else None
            return base64.b64decode(text + b"=" * (-len(text) % 4), altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            pass
    return data


def _read(path: str, what: str) -> bytes:
    return read_input(path, what, MAX_INPUT_SIZE)


def _hex(value: str | None, what: str, size: int | None = None, pad: bool = False) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise UsageError(f"{what} must be hex") from None
    if size is not None:
        if pad and len(raw) <= size:
            raw += bytes(size - len(raw))
        if len(raw) != size:
            raise UsageError(f"{what} must be {'at most ' if pad else ''}{size} bytes, got {len(raw)}")
    return raw


def _policy(args: argparse.Namespace) -> SnpPolicy:
    product = None
    if args.product is not None:
        try:
            product = Product.from_name(args.product)
        except AttestationError as exc:
            raise UsageError(f"--product: {exc}") from None
    minimum = None
    if args.min_launch_tcb is not None:
        parts = args.min_launch_tcb.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise UsageError("--min-launch-tcb must be BL:TEE:SNP:UCODE, e.g. 3:0:8:115")
        minimum = SnpVersions(*(int(p) for p in parts))
    digests: list[bytes] | None = None
    if args.id_key_digest is not None:
        digests = [_hex(d, "--id-key-digest", 48) or b"" for d in args.id_key_digest]
    given: dict[str, Any] = {
        "product": product,
        "report_data": _hex(args.report_data, "--report-data", 64, pad=True),
        "measurement": _hex(args.measurement, "--measurement", 48),
        "accepted_id_key_digests": digests,
        "minimum_launch_tcb": minimum,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    overrides["vmpl"] = None if args.vmpl == -1 else args.vmpl
    overrides["allow_debug"] = args.allow_debug
    config = _config(args)
    try:
        return SnpPolicy.from_config(config, **overrides) if config is not None else SnpPolicy(**overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _config(args: argparse.Namespace) -> AttestationConfig | None:
    if args.config is None and args.variant is None:
        return None
    if args.config is None or args.variant is None:
        raise UsageError("--config and --variant go together")
    try:
        variant = Variant.from_string(args.variant)
        if variant not in _SNP_VARIANTS:
            raise UsageError(f"--variant {variant.value} is not an SNP variant ({', '.join(_SNP_VARIANTS_TEXT)})")
        # A raw report has no PCRs: the config's measurements are not used here, so a config that
        # enforces none (like the evidence configs in docs/configs/evidence) is fine.
        return load_attestation_config(_read(args.config, "config"), variant, allow_unenforced=True)
    except AttestationError as exc:
        raise UsageError(f"--config: {exc}") from None


_NOT_CHECKED = (
    (
        "report-data",
        "report_data",
        "not checked: no --report-data given, so nothing binds the report to a nonce or key (a replayed report passes)",
    ),
    ("measurement", "measurement", "not checked: no --measurement given, so any launch measurement passes"),
    (
        "launch-tcb-minimum",
        "minimum_launch_tcb",
        "not checked: no --min-launch-tcb or --config given, so any launch TCB passes",
    ),
)


def _with_unchecked(evaluation: SnpEvaluation, policy: SnpPolicy) -> SnpEvaluation:
    """An accepted evaluation with a WARN row for every expectation the policy did not set."""
    if not evaluation.accepted:
        return evaluation  # the rejected check stays the last row
    rows = [
        Check(name, CheckStatus.WARN, detail) for name, field, detail in _NOT_CHECKED if getattr(policy, field) is None
    ]
    if not rows:
        return evaluation
    warnings = evaluation.warnings + tuple(f"{c.name}: {c.detail}" for c in rows)
    return attrs.evolve(evaluation, checks=evaluation.checks + tuple(rows), warnings=warnings)


def _report_bytes(args: argparse.Namespace) -> tuple[bytes, bytes, list[Check]]:
    """(report, bytes after it, rows about the input) from the report file; UsageError when the file
    is not a report, an extended report or an HCL report."""
    raw = _read(args.report, "report")
    if not raw.strip() or looks_like_json(raw) or pem_labels(raw):
        raise UsageError(f"report {args.report} is {describe_input(raw)}: {_WHAT_REPORT}")
    evidence = decode_evidence_bytes(raw)
    if is_hcl_report(evidence):
        try:
            hcl = read_hcl_report(evidence)
        except MalformedEvidence as exc:
            raise UsageError(f"report {args.report}: an Azure HCL report that does not parse: {exc}") from None
        detail = (
            f"input is an Azure HCL report (HCLA v{hcl.version}, {len(evidence)} bytes): the SNP report was "
            f"extracted from bytes 0x20..0x4C0, {len(hcl.runtime_data)} bytes of runtime data follow"
        )
        rows = [Check("hcl-report", CheckStatus.PASS, detail), _runtime_binding(hcl)]
        return hcl.snp_report, b"", rows
    if len(evidence) < REPORT_SIZE:
        raise UsageError(
            f"report {args.report} is {describe_input(raw)}: {len(evidence)} bytes, an SEV-SNP report has "
            f"{REPORT_SIZE}; {_WHAT_REPORT}"
        )
    return evidence[:REPORT_SIZE], evidence[REPORT_SIZE:], []


def _runtime_binding(hcl: HclReport) -> Check:
    try:
        check_runtime_data_binding(hcl.runtime_data, hcl.snp_report[0x50:0x90])
    except AttestationError as exc:
        return Check("runtime-data-binding", CheckStatus.FAIL, str(exc))
    return Check("runtime-data-binding", CheckStatus.PASS, "SHA-256(HCL runtime data) == REPORT_DATA[0:32]")


def _certs(path: str, what: str) -> AmdBundle:
    data = _read(path, what)
    try:
        return split_amd_bundle(load_certificates(data))
    except MalformedEvidence as exc:
        raise UsageError(
            f"{what} {path} is {describe_input(data)}: {exc}; expected AMD certificates (PEM or DER: the "
            "VCEK/VLEK, the ASK/ASVK and ARK, or all of them in one bundle)"
        ) from None


def _signer_and_chain(args: argparse.Namespace, table: CertTable) -> tuple[bytes, list[x509.Certificate]]:
    """--signer and --chain, each a single certificate or a bundle (VCEK + ASK + ARK): the leaf is the
    signer and the rest the chain; the extended report's table fills what neither gives."""
    given = [
        b
        for b in (
            _certs(args.signer, "--signer") if args.signer else None,
            _certs(args.chain, "--chain") if args.chain else None,
        )
        if b
    ]
    leaves = {fingerprint(b.signer): b.signer for b in given if b.signer is not None}
    if len(leaves) > 1:
        raise UsageError("--signer and --chain name two different VCEK/VLEK certificates; give one")
    chain = [c for b in given for c in b.chain]
    if args.signer and not leaves:
        raise UsageError(f"--signer {args.signer} holds no VCEK/VLEK (CN SEV-VCEK or SEV-VLEK), only CA certificates")
    signer = next(iter(leaves.values())).public_bytes(Encoding.DER) if leaves else (table.vcek or table.vlek)
    if signer is None:
        raise UsageError("no signer: give --signer (VCEK/VLEK) or an extended report whose table holds one")
    if not chain and not args.chain:
        try:
            chain = [c for blob in (table.ask, table.ark) if blob for c in load_certificates(blob)]
        except MalformedEvidence as exc:
            raise UsageError(f"the certificate table's ASK/ARK do not parse: {exc}") from None
    if not chain:
        raise UsageError(
            "no AMD chain: give --chain (ASK or ASVK, then ARK) or an extended report with ASK/ARK entries"
        )
    return signer, chain


def _evaluate(args: argparse.Namespace) -> SnpEvaluation:
    policy = _policy(args)
    at = parse_time(args.at)
    if args.vmpl < -1:
        raise UsageError("--vmpl must be 0..3, or -1 for any")
    report, table_bytes, rows = _report_bytes(args)
    if args.cert_table is not None:
        if table_bytes:
            raise UsageError("--cert-table given, but the report file already carries data after the report")
        table_bytes = decode_evidence_bytes(_read(args.cert_table, "certificate table"))
    try:
        table = parse_cert_table(table_bytes) if table_bytes else CertTable()
    except MalformedEvidence as exc:
        raise UsageError(
            f"the {len(table_bytes)} bytes after the report are not a certificate table: {exc}; pass the report "
            f"alone (its first {REPORT_SIZE} bytes), an extended report, or a whole Azure HCL report"
        ) from None
    signer, chain = _signer_and_chain(args, table)
    evaluation = _with_unchecked(SnpVerifier(policy).evaluate(report, signer, chain, at=at), policy)
    if not rows:
        return evaluation
    failed = next((r for r in rows if r.status is CheckStatus.FAIL), None)
    if failed is not None and evaluation.accepted:
        error = MalformedEvidence(failed.detail, check=failed.name)
        checks = (*(r for r in rows if r is not failed), *evaluation.checks, failed)
        return attrs.evolve(evaluation, accepted=False, checks=checks, error=error, result=None)
    return attrs.evolve(evaluation, checks=(*rows, *evaluation.checks))


def _json(evaluation: SnpEvaluation, strict: str | None) -> dict[str, Any]:
    error = evaluation.error
    return {
        "accepted": evaluation.accepted and strict is None,
        "variant": VARIANT_NAME,
        "checks": [{"name": c.name, "status": c.status.value, "detail": c.detail} for c in evaluation.checks],
        "claims": evaluation.claims(),
        "warnings": list(evaluation.warnings),
        "error": strict if error is None else f"{type(error).__name__}: {error}",
    }


def _table(evaluation: SnpEvaluation, out: TextIO, strict: str | None) -> None:
    width = max([len(c.name) for c in evaluation.checks] + [5])
    out.write(f"Attestation variant: {VARIANT_NAME}\n\n")
    out.write(f"{'CHECK':<{width}}  {'STATUS':<6}  DETAIL\n")
    for check in evaluation.checks:
        out.write(f"{check.name:<{width}}  {check.status.value.upper():<6}  {check.detail}\n")
    out.write("\n")
    claims = evaluation.claims()
    for label, key in (("Product", "product"), ("Signer", "signing_key"), ("Measure", "measurement")):
        if key in claims:
            out.write(f"{label + ':':<10} {claims[key]}\n")
    if "report_data" in claims:
        out.write(f"{'Rep. data:':<10} {claims['report_data']}\n")
    warns = sum(1 for c in evaluation.checks if c.status is CheckStatus.WARN)
    if strict is not None:
        out.write(f"Result:    REJECTED ({strict})\n")
        return
    verdict = "ACCEPTED" if evaluation.accepted else "REJECTED"
    out.write(f"Result:    {verdict} ({warns} warning{'s' if warns != 1 else ''})\n")


def run_snp_report(args: argparse.Namespace) -> int:
    try:
        evaluation = _evaluate(args)
    except UsageError as exc:
        sys.stderr.write(f"starlock-verify: {exc}\n")
        return EXIT_USAGE
    strict = strict_failure(evaluation.checks) if args.strict and evaluation.accepted else None
    if args.json:
        json.dump(_json(evaluation, strict), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _table(evaluation, sys.stdout, strict)
    if not evaluation.accepted or strict is not None:
        sys.stderr.write(f"starlock-verify: rejected: {evaluation.error if strict is None else strict}\n")
        return EXIT_REJECTED
    return EXIT_ACCEPTED
