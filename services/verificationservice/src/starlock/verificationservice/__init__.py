"""starlock-verificationservice: this node's attestation document for a caller's nonce.

``starlock-verificationservice`` (:mod:`starlock.verificationservice.cli`) serves
``/verify.API/GetAttestation`` (gRPC) and ``GET /?nonce=`` (HTTP), both over aTLS unless
``--insecure-plaintext``. What a request turns into is in :mod:`starlock.verificationservice.core`.
"""

from starlock.verificationservice.core import (
    MAX_NONCE_SIZE,
    USER_DATA,
    AttestationFailed,
    BadRequest,
    IssuerUnavailable,
    ShuttingDown,
    VerificationServiceError,
    attest,
    http_body,
    nonce_from_query,
)

__all__ = [
    "MAX_NONCE_SIZE",
    "USER_DATA",
    "AttestationFailed",
    "BadRequest",
    "IssuerUnavailable",
    "ShuttingDown",
    "VerificationServiceError",
    "attest",
    "http_body",
    "nonce_from_query",
]
