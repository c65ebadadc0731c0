"""Deprecated alias of :mod:`starlock.attestation.snpinfo` (the module is public now)."""

from __future__ import annotations

from starlock.attestation.snpinfo import (
    MAX_INSTANCE_INFO,
    AzureInfo,
    SnpInstanceInfo,
    parse_snp_instance_info,
    run_snp_verification,
    snp_chain,
)

__all__ = [
    "MAX_INSTANCE_INFO",
    "AzureInfo",
    "SnpInstanceInfo",
    "parse_snp_instance_info",
    "run_snp_verification",
    "snp_chain",
]
