"""Per-call time limits for KMS backends.

A caller with a deadline (the key service: the gRPC caller's remaining time, shortened when the
service shuts down) runs ``KMS.get_dek`` inside :func:`deadline_scope`. A backend that does
network I/O (Vault/OpenBao) reads :func:`time_left` before each request and bounds that
request's timeout with it, so a hung server costs the caller its own deadline (and the backend
raises :class:`~starlock.kms.interface.KmsUnavailable`), not the backend's configured timeout.
Backends without I/O (the cluster KMS) ignore it.

The limit lives in a context variable: each thread (and asyncio task) has its own, so
concurrent calls never see each other's deadlines. A limit may be a callable that is re-read at
every request, which lets a shutdown shorten the deadlines of calls already running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Expiry", "deadline_scope", "time_left"]

#: Returns the end of the allowed time as a :func:`time.monotonic` value, or ``None`` (no limit).
Expiry = Callable[[], float | None]

_scopes: ContextVar[tuple[Expiry, ...]] = ContextVar("starlock_kms_deadline", default=())


@contextmanager
def deadline_scope(expires_at: float | Expiry | None) -> Iterator[None]:
    """Bound backend calls made inside the ``with`` block by ``expires_at``.

    ``expires_at`` is a :func:`time.monotonic` value, a callable returning one (re-read before
    every backend request), or ``None`` (no limit). Scopes nest: the tightest limit applies.
    """
    if expires_at is None:
        yield
        return
    if callable(expires_at):
        expiry: Expiry = expires_at
    else:
        end = float(expires_at)

        def expiry() -> float:
            return end

    token = _scopes.set((*_scopes.get(), expiry))
    try:
        yield
    finally:
        _scopes.reset(token)


def time_left() -> float | None:
    """Seconds (``>= 0.0``) left before the tightest enclosing limit; ``None`` outside any scope."""
    ends = [end for end in (expiry() for expiry in _scopes.get()) if end is not None]
    if not ends:
        return None
    return max(0.0, min(ends) - time.monotonic())
