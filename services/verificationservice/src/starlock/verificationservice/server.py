"""The ``verify.API`` servicer and what both endpoints share: counting, timing and logging a request.

Status codes: :class:`BadRequest` → ``INVALID_ARGUMENT``, :class:`IssuerUnavailable` (TPM cannot
be reached) and :class:`ShuttingDown` → ``UNAVAILABLE``, any other issuer failure → ``INTERNAL``.
Messages never carry more than what is wrong with the request; causes go to the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn

import grpc

from starlock.atls.rpc import attested_peer
from starlock.attestation import Issuer
from starlock.joinproto import verify_pb2, verify_pb2_grpc
from starlock.verificationservice._gate import Gate
from starlock.verificationservice.core import (
    AttestationFailed,
    BadRequest,
    IssuerUnavailable,
    ShuttingDown,
    VerificationServiceError,
    attest,
    describe_cause,
)
from starlock.verificationservice.metrics import Metrics

__all__ = ["Attester", "VerifyServicer"]

_log = logging.getLogger("starlock.verificationservice")

_OUTCOMES: tuple[tuple[type[VerificationServiceError], str], ...] = (
    (BadRequest, "invalid_argument"),
    (ShuttingDown, "shutting_down"),
    (IssuerUnavailable, "unavailable"),
    (VerificationServiceError, "internal"),
)


class Attester:
    """The issuer behind both endpoints, with the metrics and the drain gate."""

    def __init__(self, issuer: Issuer, metrics: Metrics, gate: Gate) -> None:
        self.issuer = issuer
        self.metrics = metrics
        self.gate = gate

    def handle(self, endpoint: str, remote: str, nonce: Callable[[], bytes]) -> bytes:
        """The document for the nonce ``nonce()`` returns; raises a :class:`VerificationServiceError`."""
        start = time.monotonic()
        outcome = "internal"
        try:
            if not self.gate.enter():
                raise ShuttingDown("the verification service is shutting down; retry another replica")
            try:
                value = nonce()
                _log.info(
                    "attestation request",
                    extra={"fields": {"endpoint": endpoint, "remote": remote, "nonce_size": len(value)}},
                )
                _log.debug("nonce", extra={"fields": {"endpoint": endpoint, "nonce": value.hex()}})
                document = attest(self.issuer, value)
            finally:
                self.gate.leave()
            outcome = "ok"
            return document
        except VerificationServiceError as exc:
            outcome = next(name for kind, name in _OUTCOMES if isinstance(exc, kind))
            fields = {"endpoint": endpoint, "remote": remote, "outcome": outcome, "error": str(exc)}
            if isinstance(exc, AttestationFailed):
                fields["cause"] = describe_cause(exc)
                _log.log(
                    logging.WARNING if isinstance(exc, IssuerUnavailable) else logging.ERROR,
                    "attestation failed",
                    extra={"fields": fields},
                )
            else:
                _log.info("request refused", extra={"fields": fields})
            raise
        finally:
            self.metrics.observe(endpoint, outcome, time.monotonic() - start)


_CODES: tuple[tuple[type[VerificationServiceError], grpc.StatusCode], ...] = (
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ShuttingDown, grpc.StatusCode.UNAVAILABLE),
    (IssuerUnavailable, grpc.StatusCode.UNAVAILABLE),
    (VerificationServiceError, grpc.StatusCode.INTERNAL),
)


def _remote(context: grpc.ServicerContext) -> str:
    try:
        return attested_peer(context).remote_endpoint
    except LookupError:  # served without aTLS (--insecure-plaintext)
        return str(context.peer())


class VerifyServicer(verify_pb2_grpc.APIServicer):
    """``/verify.API/GetAttestation``: the node's document for the request's nonce."""

    def __init__(self, attester: Attester) -> None:
        self._attester = attester

    def GetAttestation(
        self, request: verify_pb2.GetAttestationRequest, context: grpc.ServicerContext
    ) -> verify_pb2.GetAttestationResponse:
        try:
            document = self._attester.handle("grpc", _remote(context), lambda: bytes(request.nonce))
        except VerificationServiceError as exc:
            _abort(context, exc)
        return verify_pb2.GetAttestationResponse(attestation=document)


def _abort(context: grpc.ServicerContext, exc: VerificationServiceError) -> NoReturn:
    code = next(code for kind, code in _CODES if isinstance(exc, kind))
    context.abort(code, str(exc))
    raise AssertionError("context.abort returned")  # grpc raises; this line is never reached
