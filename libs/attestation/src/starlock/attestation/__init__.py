"""starlock-attestation: verify (and, on a node, issue) Constellation-compatible attestation.

The high-level API third parties need: :func:`load_attestation_config`, :func:`validator_for`
and the validator's ``validate(document, nonce)`` / ``evaluate(document, nonce)``. Lower layers
(TPM structures, quotes, event logs) live in :mod:`starlock.attestation.tpm`.

Names that pull in optional dependencies (the TPM issuer needs ``tpm2-pytss``, the ``[tpm]``
extra) are imported lazily, so verification works without them.
"""

from __future__ import annotations

import importlib
from typing import Any

from starlock.attestation.config import (
    AttestationConfig,
    EnforcementPolicy,
    FirmwareSignerConfig,
    SnpVersions,
    load_attestation_config,
)
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    ConfigError,
    EventLogMismatch,
    MalformedEvidence,
    MeasurementMismatch,
    NonceMismatch,
    PcrDigestMismatch,
    PolicyViolation,
    SignatureError,
    UnsupportedError,
    UntrustedKey,
)
from starlock.attestation.interfaces import (
    Check,
    CheckStatus,
    EvaluationReport,
    Issuer,
    ValidationResult,
    Validator,
)
from starlock.attestation.measurements import Measurement, Measurements
from starlock.attestation.variant import Variant

__all__ = [
    "AttestationConfig",
    "AttestationDocument",
    "AttestationError",
    "AzureInfo",
    "CertificateChainError",
    "Check",
    "CheckStatus",
    "ConfigError",
    "EnforcementPolicy",
    "EvaluationReport",
    "EventLogMismatch",
    "FirmwareSignerConfig",
    "Issuer",
    "MalformedEvidence",
    "Measurement",
    "MeasurementMismatch",
    "Measurements",
    "NonceMismatch",
    "PcrDigestMismatch",
    "PolicyViolation",
    "QemuVtpmIssuer",
    "QemuVtpmValidator",
    "SignatureError",
    "SnpInstanceInfo",
    "SnpVersions",
    "UnsupportedError",
    "UntrustedKey",
    "ValidationResult",
    "Validator",
    "Variant",
    "load_attestation_config",
    "parse_snp_instance_info",
    "validator_for",
]

_LAZY = {
    "AzureInfo": "starlock.attestation.snpinfo",
    "SnpInstanceInfo": "starlock.attestation.snpinfo",
    "parse_snp_instance_info": "starlock.attestation.snpinfo",
    "QemuVtpmIssuer": "starlock.attestation.qemu.issuer",
    "QemuVtpmValidator": "starlock.attestation.qemu.validator",
    "validator_for": "starlock.attestation.validators",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'starlock.attestation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
