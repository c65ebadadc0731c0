"""Errors of the join service; each maps to one gRPC status (see :mod:`.server`)."""

from __future__ import annotations

__all__ = ["BadRequest", "Conflict", "JoinServiceError", "Unavailable"]


class JoinServiceError(Exception):
    """A ticket could not be issued (gRPC ``INTERNAL``). Messages never hold secrets."""


class BadRequest(JoinServiceError):
    """The request is malformed: CSR, host key, disk UUID (gRPC ``INVALID_ARGUMENT``)."""


class Unavailable(JoinServiceError):
    """The key service or the API server cannot be reached; retry (gRPC ``UNAVAILABLE``)."""


class Conflict(JoinServiceError):
    """Another control plane is joining right now (gRPC ``FAILED_PRECONDITION``)."""
