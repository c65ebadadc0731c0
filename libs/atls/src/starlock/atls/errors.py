"""One error hierarchy for everything the aTLS layer refuses.

Every refusal raises a subclass of :class:`AtlsError` whose name says which check failed and whose
message names the field, the expected and the actual value. Messages never carry key material;
nonces are public (they travel in clear in SNI and the CertificateRequest).
"""

from __future__ import annotations

from starlock.attestation.variant import Variant

__all__ = [
    "AtlsConfigError",
    "AtlsError",
    "AttestationRejected",
    "BindingsUnavailable",
    "CertificateError",
    "HandshakeError",
    "IssuerUnavailable",
    "NoCompatibleAttestation",
    "NonceError",
    "UserDataMismatch",
]


class AtlsError(Exception):
    """Base class: the attested channel was not established. ``check`` names the failed check."""

    check: str = "atls"


class AtlsConfigError(AtlsError):
    """The aTLS configuration is invalid (e.g. the dummy variant without explicit opt-in)."""

    check = "config"


class IssuerUnavailable(AtlsConfigError):
    """This side's issuer cannot attest (no TPM, tpm2-pytss missing, ...): found by a check at start."""

    check = "issuer"


class BindingsUnavailable(AtlsError, ImportError):
    """The private OpenSSL bindings aTLS needs are missing from this pyOpenSSL/cryptography."""

    check = "bindings"


class HandshakeError(AtlsError):
    """The TLS handshake failed below the attestation layer (alert, EOF, timeout, protocol)."""

    check = "handshake"


class NonceError(AtlsError):
    """A nonce (client nonce in SNI, server nonce in the CertificateRequest) is absent or malformed."""

    check = "nonce"


class CertificateError(AtlsError):
    """The peer's certificate is absent, malformed, oversized, not validly self-signed or not valid now."""

    check = "certificate"


class NoCompatibleAttestation(AtlsError):
    """No extension of the peer's certificate carries a document for a configured validator."""

    check = "attestation-oid"

    def __init__(self, seen: list[str], accepted: list[str]) -> None:
        self.seen = tuple(seen)
        self.accepted = tuple(accepted)
        super().__init__(
            f"certificate does not contain compatible attestation documents: got extension OIDs "
            f"[{', '.join(seen)}], accepted [{', '.join(accepted)}]"
        )


class AttestationRejected(AtlsError):
    """The validator of the matching variant rejected the attestation document.

    ``cause`` is the validator's exception (an ``AttestationError`` naming the failed check, or
    whatever a faulty validator raised); ``reason`` is that check's name.
    """

    check = "attestation"

    def __init__(self, variant: Variant, cause: BaseException) -> None:
        self.variant = variant
        self.cause = cause
        self.reason = str(getattr(cause, "check", type(cause).__name__))
        super().__init__(f"{variant.value} attestation rejected ({self.reason}): {type(cause).__name__}: {cause}")


class UserDataMismatch(AtlsError):
    """The document is valid but binds another key: its user data is not the certificate's key hash."""

    check = "user-data"
