"""The ``join.API`` servicer: status codes, audit lines, metrics and draining around the issuer.

Status codes: :class:`BadRequest` → ``INVALID_ARGUMENT``, :class:`Unavailable` → ``UNAVAILABLE``,
:class:`Conflict` → ``FAILED_PRECONDITION``, any other failure → ``INTERNAL`` (messages never
carry a key, a token or a private key; an unexpected exception is reported by its type only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from starlock.atls.rpc import attested_peer
from starlock.joinproto import join_pb2, join_pb2_grpc
from starlock.joinservice.errors import BadRequest, Conflict, JoinServiceError, Unavailable
from starlock.joinservice.metrics import Metrics
from starlock.joinservice.ticket import Ticket, TicketIssuer

__all__ = ["JoinServicer"]

_log = logging.getLogger("starlock.joinservice")
_audit = logging.getLogger("starlock.joinservice.audit")
_IDENTITY_CLAIMS = ("ak_name", "chip_id", "instance_id", "instance_name")
_CODES: tuple[tuple[type[Exception], grpc.StatusCode, str], ...] = (
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"),
    (Unavailable, grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION, "failed_precondition"),
    (JoinServiceError, grpc.StatusCode.INTERNAL, "internal"),
)


def _identity(claims: Any) -> dict[str, str]:
    if not isinstance(claims, dict):
        return {}
    return {k: str(claims[k]) for k in _IDENTITY_CLAIMS if k in claims}


class JoinServicer(join_pb2_grpc.APIServicer):
    def __init__(self, issuer: TicketIssuer, metrics: Metrics, *, variant: str) -> None:
        self._issuer = issuer
        self._metrics = metrics
        self._variant = variant
        self._lock = threading.Condition()
        self._in_flight = 0
        self._draining = False

    # --- draining (graceful SIGTERM) -------------------------------------------------------

    def drain(self, grace: float) -> bool:
        """Refuse new tickets and wait up to ``grace`` seconds for those in flight; True if none left."""
        deadline = time.monotonic() + grace
        with self._lock:
            self._draining = True
            while self._in_flight and time.monotonic() < deadline:
                self._lock.wait(max(0.0, deadline - time.monotonic()))
            return self._in_flight == 0

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            if self._draining:
                context.abort(grpc.StatusCode.UNAVAILABLE, "join service is shutting down; retry another replica")
            self._in_flight += 1

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    # --- handlers --------------------------------------------------------------------------

    def IssueJoinTicket(
        self, request: join_pb2.IssueJoinTicketRequest, context: grpc.ServicerContext
    ) -> join_pb2.IssueJoinTicketResponse:
        response: join_pb2.IssueJoinTicketResponse = self._serve(
            "join",
            context,
            lambda peer, budget: self._issuer.join(request, peer, budget),
            role="control-plane" if request.is_control_plane else "worker",
        )
        return response

    def IssueRejoinTicket(
        self, request: join_pb2.IssueRejoinTicketRequest, context: grpc.ServicerContext
    ) -> join_pb2.IssueRejoinTicketResponse:
        response: join_pb2.IssueRejoinTicketResponse = self._serve(
            "rejoin", context, lambda _peer, budget: self._issuer.rejoin(request, budget), role=""
        )
        return response

    def _serve(
        self,
        method: str,
        context: grpc.ServicerContext,
        issue: Callable[[str, float | None], Ticket],
        *,
        role: str,
    ) -> Any:
        started = time.monotonic()
        self._enter(context)
        peer = attested_peer(context)
        attestation = peer.attestation
        if attestation is None:  # the server always validates clients; never reached in practice
            self._leave()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "the peer did not attest")
        record: dict[str, Any] = {
            "method": method,
            "peer": peer.remote_endpoint,
            "variant": attestation.variant.value,
            "identity": _identity(attestation.result.claims),
            "role": role,
        }
        try:
            remaining = context.time_remaining()
            budget = None if remaining is None else max(0.05, remaining - 0.05)
            ticket = issue(peer.remote_endpoint, budget)
        except Exception as exc:
            self._leave()
            self._fail(context, method, started, record, exc)
        self._leave()
        record.update(node=ticket.node, outcome="ok")
        self._finish(method, started, record)
        return ticket.response

    def _finish(self, method: str, started: float, record: dict[str, Any]) -> None:
        took = time.monotonic() - started
        self._metrics.tickets.labels(method, record["outcome"]).inc()
        self._metrics.duration.labels(method).observe(took)
        record["duration_ms"] = round(took * 1000, 1)
        _audit.info("ticket", extra={"fields": record})

    def _fail(
        self, context: grpc.ServicerContext, method: str, started: float, record: dict[str, Any], exc: Exception
    ) -> NoReturn:
        code, outcome, message = grpc.StatusCode.INTERNAL, "internal", f"unexpected {type(exc).__name__}"
        for kind, kind_code, kind_outcome in _CODES:
            if isinstance(exc, kind):
                code, outcome, message = kind_code, kind_outcome, str(exc)
                break
        else:
            _log.error("ticket failed with an unexpected error", extra={"fields": {"type": type(exc).__name__}})
        record.update(outcome=outcome, error=message)
        self._finish(method, started, record)
        context.abort(code, f"issuing {method} ticket: {message}")
