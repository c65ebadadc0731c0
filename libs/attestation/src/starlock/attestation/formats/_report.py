"""The result of checking foreign evidence: like :class:`EvaluationReport`, named by its format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from starlock.attestation.config import AttestationConfig
from starlock.attestation.errors import AttestationError
from starlock.attestation.interfaces import Check, CheckStatus
from starlock.attestation.vtpm import CheckRecorder

__all__ = ["FormatReport", "compare_measurements"]


@attrs.frozen
class FormatReport:
    """``format`` names the evidence format (e.g. ``trustee-az-snp-vtpm``); ``error`` is the
    failure of a rejected report, whose last check is the failed one."""

    format: str
    accepted: bool
    checks: tuple[Check, ...]
    claims: Mapping[str, Any] = attrs.field(factory=dict)
    warnings: tuple[str, ...] = ()
    error: AttestationError | None = None

    @classmethod
    def finish(
        cls, name: str, rec: CheckRecorder, claims: dict[str, Any], error: AttestationError | None
    ) -> FormatReport:
        if error is not None and (not rec.checks or rec.checks[-1].status is not CheckStatus.FAIL):
            rec.checks.append(Check(error.check, CheckStatus.FAIL, f"{type(error).__name__}: {error}"))
        return cls(name, error is None, tuple(rec.checks), claims, tuple(rec.warnings), error)


def compare_measurements(config: AttestationConfig, pcrs: Mapping[int, bytes], rec: CheckRecorder) -> None:
    """The config's measurements against verified SHA-256 PCR values (as the vTPM frame does)."""
    if not config.measurements.enforced:
        rec.add(
            "measurements",
            CheckStatus.WARN,
            f"no enforced measurement ({len(config.measurements)} warn-only entries): any PCR values are accepted",
        )
    comparison = config.measurements.compare(pcrs)
    for warning in comparison.warnings:
        rec.add("measurements", CheckStatus.WARN, warning)
    rec.run(
        "measurements",
        comparison.raise_for_errors,
        lambda _: (
            f"{len(comparison.checked)} expected values compared ({len(comparison.warnings)} warn-only mismatches)"
        ),
    )
