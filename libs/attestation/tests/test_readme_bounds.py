"""The input bounds the README states are the ones in the code (issue 16: it said 2 MiB for
documents while starlock-verify reads 4 MiB; both are right, for different things)."""

from __future__ import annotations

import re
from pathlib import Path

from starlock.attestation import cli, config, document
from starlock.attestation.snp import _cli as snp_cli
from starlock.attestation.tpm import eventlog, public, structures
from starlock.attestation.trust import _certs

README = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
MiB, KiB = 1024 * 1024, 1024


def _stated(pattern: str) -> int:
    match = re.search(pattern, README)
    assert match, pattern
    number, unit = int(match.group(1).replace(",", "")), match.group(2)
    return number * {"MiB": MiB, "KiB": KiB, "": 1}[unit]


def test_document_bound() -> None:
    assert _stated(r"attestation documents (\d+) (MiB) \(`document.MAX_DOCUMENT_SIZE`") == document.MAX_DOCUMENT_SIZE


def test_cli_read_bounds() -> None:
    assert _stated(r"`starlock-verify` reads at most (\d+) (MiB) of each input file") == cli.MAX_INPUT_SIZE
    assert _stated(r"and (\d+) (MiB) for `snp-report` inputs") == snp_cli.MAX_INPUT_SIZE
    assert _stated(r"so a document between 2 and (\d+) (MiB) is read") == cli.MAX_INPUT_SIZE
    assert cli.MAX_INPUT_SIZE > document.MAX_DOCUMENT_SIZE  # which is why the parser's bound applies


def test_other_parser_bounds() -> None:
    assert _stated(r"event logs (\d+) (MiB) and") == eventlog.MAX_EVENT_LOG_SIZE
    assert _stated(r"event logs \d+ MiB and ([\d,]+) ()events") == eventlog.MAX_EVENTS
    assert _stated(r"event data (\d+) (KiB)") == eventlog.MAX_EVENT_DATA_SIZE
    assert _stated(r"TPMT_PUBLIC (\d+) (KiB)") == public.MAX_TPMT_PUBLIC_SIZE
    assert _stated(r"TPMS_ATTEST and TPMT_SIGNATURE (\d+) (KiB)") == structures.MAX_TPMS_ATTEST_SIZE
    assert structures.MAX_TPMT_SIGNATURE_SIZE == structures.MAX_TPMS_ATTEST_SIZE
    assert _stated(r"attestation configs (\d+) (MiB)") == config.MAX_CONFIG_SIZE
    assert _stated(r"certificate bundles (\d+) (KiB)") == _certs.MAX_BUNDLE_SIZE
