"""The issuer and validator interfaces that aTLS and the services use, and the result type.

An :class:`Issuer` produces an attestation document binding ``user_data`` (in aTLS: the hash of
the certificate's public key) to a peer's ``nonce``. A :class:`Validator` checks a document for
a nonce and returns a :class:`ValidationResult` whose ``user_data`` the caller must compare with
what it expects; any failed check raises an :class:`~starlock.attestation.errors.AttestationError`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from starlock.attestation.variant import Variant

__all__ = ["Check", "CheckStatus", "EvaluationReport", "Issuer", "ValidationResult", "Validator"]


class CheckStatus(enum.Enum):
    PASS = "pass"  # noqa: S105 - a check status, not a password
    FAIL = "fail"
    WARN = "warn"


@attrs.frozen
class Check:
    """One check a validator performed: a short stable ``name`` and a human ``detail``."""

    name: str
    status: CheckStatus
    detail: str = ""


@attrs.frozen
class ValidationResult:
    """What an accepted document proved.

    ``claims`` holds the verified facts (PCR values, AK name, ...) as JSON-compatible values;
    ``warnings`` the warn-only findings; ``checks`` every check in the order performed.
    """

    variant: Variant
    user_data: bytes
    checks: tuple[Check, ...]
    claims: Mapping[str, Any] = attrs.field(factory=dict)
    warnings: tuple[str, ...] = ()


@runtime_checkable
class Issuer(Protocol):
    @property
    def variant(self) -> Variant: ...

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        """Return the serialised attestation document for ``user_data`` and ``nonce``."""
        ...


@runtime_checkable
class Validator(Protocol):
    @property
    def variant(self) -> Variant: ...

    def validate(self, document: bytes, nonce: bytes) -> ValidationResult:
        """Check ``document`` for ``nonce``; raise an AttestationError on any failure."""
        ...


@attrs.frozen
class EvaluationReport:
    """Everything a validator found, accepted or not: what ``starlock-verify`` prints.

    ``error`` is the first failure (None when accepted); ``checks`` lists the checks in the order
    performed, ending with the failed one when rejected.
    """

    variant: Variant
    accepted: bool
    checks: tuple[Check, ...]
    claims: Mapping[str, Any] = attrs.field(factory=dict)
    warnings: tuple[str, ...] = ()
    user_data: bytes | None = None
    error: Exception | None = None

    def to_result(self) -> ValidationResult:
        """The ValidationResult of an accepted report; raises the failure of a rejected one."""
        if not self.accepted or self.user_data is None:
            if self.error is not None:
                raise self.error
            raise RuntimeError("report was rejected without an error")  # pragma: no cover - invariant
        return ValidationResult(
            variant=self.variant,
            user_data=self.user_data,
            checks=self.checks,
            claims=self.claims,
            warnings=self.warnings,
        )
