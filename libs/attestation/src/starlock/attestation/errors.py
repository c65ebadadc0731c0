"""One error hierarchy for everything the attestation library can refuse.

Every check that fails raises a subclass of :class:`AttestationError` whose name says which
kind of check failed and whose message names the field, the expected and the actual value.
Messages never carry secrets; evidence (quotes, PCR values, digests) is public by nature.
"""

from __future__ import annotations

__all__ = [
    "AttestationError",
    "CertificateChainError",
    "ConfigError",
    "EventLogMismatch",
    "MalformedEvidence",
    "MeasurementMismatch",
    "NonceMismatch",
    "PcrDigestMismatch",
    "PolicyViolation",
    "SignatureError",
    "UnsupportedError",
    "UntrustedKey",
]


class AttestationError(Exception):
    """Base class: the evidence was not accepted. ``check`` names the failed check."""

    check: str = "attestation"

    def __init__(self, message: str, *, check: str | None = None) -> None:
        super().__init__(message)
        if check is not None:
            self.check = check


class MalformedEvidence(AttestationError):
    """The evidence could not be parsed: wrong size, bad encoding, out-of-range field."""

    check = "parse"


class SignatureError(AttestationError):
    """A signature over evidence (quote, report, certificate) does not verify."""

    check = "signature"


class CertificateChainError(AttestationError):
    """A certificate chain does not lead to a trusted, pinned root, or is not valid now."""

    check = "certificate-chain"


class UntrustedKey(AttestationError):
    """The attestation key is not one the validator trusts (pinned AK, certified AK)."""

    check = "attestation-key"


class NonceMismatch(AttestationError):
    """The evidence is not bound to the expected nonce / user data (replay or wrong peer)."""

    check = "nonce"


class PcrDigestMismatch(AttestationError):
    """A quote's PCR selection or digest does not match the PCR values supplied with it."""

    check = "pcr-digest"


class EventLogMismatch(AttestationError):
    """Replaying the event log does not give the quoted PCR values."""

    check = "event-log"


class MeasurementMismatch(AttestationError):
    """One or more enforced measurements differ from the expected values."""

    check = "measurements"


class PolicyViolation(AttestationError):
    """The evidence is authentic but violates the configured policy (TCB, debug, VMPL...)."""

    check = "policy"


class ConfigError(AttestationError):
    """The attestation config (measurements, variant options, trust roots) is invalid."""

    check = "config"


class UnsupportedError(AttestationError):
    """The requested variant or feature is not implemented by this version of Starlock."""

    check = "unsupported"
