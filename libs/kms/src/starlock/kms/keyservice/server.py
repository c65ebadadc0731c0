"""The ``/kms.API/GetDataKey`` servicer, the key service and its graceful shutdown.

Wire behaviour as upstream (``keyservice/internal/server``): the bare ``data_key_id`` gets the
``key-`` prefix and goes to ``KMS.get_dek``. Transports differ on purpose (upstream serves
plaintext gRPC on ``:9000``): a Unix socket in a private directory, TCP with mutual TLS, or
plaintext TCP only when asked explicitly (loopback by default); see :mod:`._listen`.

**Deadlines.** Each backend call runs inside :func:`starlock.kms.deadline.deadline_scope`,
bounded by the gRPC caller's remaining time (minus a margin to send the answer): a backend that
hangs makes the call fail with ``UNAVAILABLE`` before the caller gives up, instead of the caller
seeing ``DEADLINE_EXCEEDED`` while the handler thread stays blocked.

**Shutdown** (:meth:`KeyService.shutdown`): calls accepted before it finish, bounded by the
grace (their backend deadlines are shortened to it); calls accepted after it, including calls
that reached the server while it began, are answered ``UNAVAILABLE`` (retryable) rather than
cancelled by gRPC; the gRPC server stops once those are answered.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import grpc

from starlock.joinproto import keyservice_pb2
from starlock.kms.deadline import deadline_scope
from starlock.kms.interface import (
    DEK_PREFIX,
    KMS,
    MAX_DEK_LENGTH,
    KmsError,
    KmsFailedPrecondition,
    KmsInvalidArgument,
    KmsUnavailable,
)
from starlock.kms.keyservice._listen import add_insecure_port, add_mtls_port, add_unix_socket
from starlock.kms.keyservice._log import LOGGER_NAME, vlog
from starlock.kms.keyservice._pool import HandlerPool, accepted_at

__all__ = [
    "MAX_DATA_KEY_ID_LENGTH",
    "SERVICE_NAME",
    "KeyService",
    "KeyServiceServicer",
    "add_insecure_port",
    "add_mtls_port",
    "add_unix_socket",
    "build_server",
]

SERVICE_NAME = "kms.API"
#: Longest accepted ``data_key_id`` in UTF-8 bytes (upstream has none; ids are UUIDs or names).
MAX_DATA_KEY_ID_LENGTH = 1024
#: Largest request message accepted (a request is an id and a length).
_MAX_RECEIVE_MESSAGE = 16 * 1024
#: ``time_remaining()`` above this means the caller set no deadline.
_NO_DEADLINE = 1e8
#: After a shutdown's last in-flight call: how long no new call must arrive, and at most how long
#: to wait for that, before the gRPC server stops (a call gRPC still holds would be cancelled).
_QUIET_PERIOD = 0.1
_QUIET_MAX = 1.0
#: What ``server.stop`` gives the calls still running (answers being sent, or calls past the grace).
_STOP_GRACE = 0.5
#: Shortest limit a shutdown grace puts on each backend request.
_MIN_REQUEST_CAP = 1.0

_log = logging.getLogger(LOGGER_NAME)


class KeyServiceServicer:
    """Serves ``GetDataKey`` from a :class:`~starlock.kms.interface.KMS`. Thread-safe.

    ``shutdown_grace``: the grace a later :meth:`drain` will give. Each backend request is then
    limited to it (at least 1 s, less the answer margin), so a request already running when the
    shutdown begins ends within the grace too; requests made after it end with the grace.
    """

    def __init__(self, kms: KMS, *, shutdown_grace: float | None = None) -> None:
        self._kms = kms
        self._draining_since: float | None = None
        self._shutdown_end: float | None = None
        self._request_cap = (
            max(_MIN_REQUEST_CAP, shutdown_grace - _answer_margin(shutdown_grace)) if shutdown_grace else None
        )

    def drain(self, grace: float, *, since: float | None = None) -> None:
        """Refuse calls accepted from ``since`` (default: now) on; end running calls' backend
        deadlines ``grace`` seconds after it, early enough to send their answers."""
        since = time.monotonic() if since is None else since
        self._shutdown_end = since + grace - _answer_margin(grace)
        self._draining_since = since

    def GetDataKey(
        self, request: keyservice_pb2.GetDataKeyRequest, context: grpc.ServicerContext
    ) -> keyservice_pb2.GetDataKeyResponse:
        data_key_id: str = request.data_key_id
        length: int = request.length
        draining_since = self._draining_since
        if draining_since is not None:
            accepted = accepted_at()
            if accepted is None or accepted >= draining_since:
                vlog(_log, 2, "GetDataKey refused: shutting down", data_key_id=data_key_id[:MAX_DATA_KEY_ID_LENGTH])
                context.abort(grpc.StatusCode.UNAVAILABLE, "the key service is shutting down; retry")
        vlog(_log, 2, "GetDataKey request", data_key_id=data_key_id[:MAX_DATA_KEY_ID_LENGTH], length=length)
        if length == 0:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "can't derive key with length zero")
        if not data_key_id:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "no data key ID specified")
        if length > MAX_DEK_LENGTH:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"length must be at most {MAX_DEK_LENGTH} bytes")
        if len(data_key_id.encode("utf-8", "surrogatepass")) > MAX_DATA_KEY_ID_LENGTH:
            self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"data key ID is longer than {MAX_DATA_KEY_ID_LENGTH} bytes"
            )
        call_end = _call_end(context)
        try:
            with deadline_scope(lambda: _earliest(call_end, self._backend_end())):
                key = self._kms.get_dek(DEK_PREFIX + data_key_id, length)
        except KmsUnavailable as e:
            self._abort(context, grpc.StatusCode.UNAVAILABLE, f"KMS unavailable: {e}")
        except KmsInvalidArgument as e:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except KmsFailedPrecondition as e:
            self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"getting data key: {e}")
        except KmsError as e:
            # KmsPermissionDenied and KmsConfigError included: the caller is not at fault.
            self._abort(context, grpc.StatusCode.INTERNAL, f"getting data key: {e}")
        except Exception as e:
            # A backend bug: its message may hold anything, so only the type is reported.
            self._abort(context, grpc.StatusCode.INTERNAL, f"getting data key: unexpected {type(e).__name__}")
        if len(key) != length:
            self._abort(context, grpc.StatusCode.INTERNAL, "getting data key: backend returned a key of wrong length")
        vlog(_log, 4, "GetDataKey success", data_key_id=data_key_id, length=length)
        return keyservice_pb2.GetDataKeyResponse(data_key=key)

    def _backend_end(self) -> float | None:
        """Re-read before every backend request (see :mod:`starlock.kms.deadline`)."""
        if self._shutdown_end is not None:
            return self._shutdown_end
        return None if self._request_cap is None else time.monotonic() + self._request_cap

    @staticmethod
    def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
        serious = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION)
        level = logging.WARNING if code in serious else logging.INFO
        _log.log(level, "GetDataKey failed", extra={"v": 2, "fields": {"code": code.name, "error": details}})
        context.abort(code, details)


def _handler(servicer: KeyServiceServicer) -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "GetDataKey": grpc.unary_unary_rpc_method_handler(
                servicer.GetDataKey,
                request_deserializer=keyservice_pb2.GetDataKeyRequest.FromString,
                response_serializer=keyservice_pb2.GetDataKeyResponse.SerializeToString,
            )
        },
    )


def _answer_margin(seconds: float) -> float:
    """Time kept back from a limit of ``seconds`` to send the answer (50 ms to 0.5 s)."""
    return min(0.5, max(0.05, 0.2 * seconds))


def _call_end(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return time.monotonic() + remaining - _answer_margin(remaining)


def _earliest(*ends: float | None) -> float | None:
    return min((end for end in ends if end is not None), default=None)


class KeyService:
    """A key service: a ``grpc.Server`` (not started, no port yet) serving ``kms.API`` from
    ``kms``, with a graceful :meth:`shutdown`. Add listeners with the ``add_*`` functions.

    ``shutdown_grace``: the grace :meth:`shutdown` will be given; it also limits each backend
    request (see :class:`KeyServiceServicer`), so that calls running at shutdown end within it.
    """

    def __init__(self, kms: KMS, *, max_workers: int = 16, shutdown_grace: float | None = None) -> None:
        self.servicer = KeyServiceServicer(kms, shutdown_grace=shutdown_grace)
        self._pool = HandlerPool(max_workers, thread_name_prefix="keyservice")
        self.server = grpc.server(
            self._pool,
            handlers=[_handler(self.servicer)],
            options=[("grpc.max_receive_message_length", _MAX_RECEIVE_MESSAGE), ("grpc.so_reuseport", 0)],
        )

    def shutdown(self, grace: float) -> bool:
        """Stop serving; True if every call accepted before now finished within ``grace`` seconds.

        Returns within about ``grace`` + 1.5 s. Closing the backend is left to the caller: after
        this returns, no call accepted before it still runs unless the result is False (a backend
        that ignored its deadline).
        """
        since = time.monotonic()
        self.servicer.drain(grace, since=since)
        finished = self._pool.wait_accepted_before(since, timeout=grace)
        # Calls that reached the server as the shutdown began may still be on their way to a
        # handler; once no call arrived for a moment, gRPC holds none that it would cancel.
        self._pool.wait_quiet(_QUIET_PERIOD, timeout=_QUIET_MAX)
        self.server.stop(_STOP_GRACE).wait(_STOP_GRACE + 1.0)
        return finished


def build_server(kms: KMS, *, max_workers: int = 16) -> grpc.Server:
    """A grpc.Server (not started, no port yet) serving ``kms.API`` from ``kms``.

    For a graceful shutdown (in-flight calls finish, later ones get ``UNAVAILABLE``) use
    :class:`KeyService` and its ``shutdown`` instead of ``server.stop``.
    """
    return KeyService(kms, max_workers=max_workers).server
