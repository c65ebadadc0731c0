"""The ``/kms.API/GetDataKey`` servicer and the key service's transports.

Wire behaviour as upstream (``keyservice/internal/server``): the bare ``data_key_id`` gets the
``key-`` prefix and goes to ``KMS.get_dek``. Transports differ on purpose (upstream serves
plaintext gRPC on ``:9000``): a Unix socket in a private directory, TCP with mutual TLS, or
plaintext TCP only when asked explicitly (loopback by default).
"""

from __future__ import annotations

import logging
import os
import stat
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc

from starlock.joinproto import keyservice_pb2
from starlock.kms.interface import (
    DEK_PREFIX,
    KMS,
    MAX_DEK_LENGTH,
    KmsConfigError,
    KmsError,
    KmsFailedPrecondition,
    KmsInvalidArgument,
    KmsUnavailable,
)
from starlock.kms.keyservice._log import LOGGER_NAME, vlog

__all__ = [
    "MAX_DATA_KEY_ID_LENGTH",
    "SERVICE_NAME",
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

_log = logging.getLogger(LOGGER_NAME)


class KeyServiceServicer:
    """Serves ``GetDataKey`` from a :class:`~starlock.kms.interface.KMS`. Thread-safe."""

    def __init__(self, kms: KMS) -> None:
        self._kms = kms

    def GetDataKey(
        self, request: keyservice_pb2.GetDataKeyRequest, context: grpc.ServicerContext
    ) -> keyservice_pb2.GetDataKeyResponse:
        data_key_id: str = request.data_key_id
        length: int = request.length
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
        try:
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


def build_server(kms: KMS, *, max_workers: int = 16) -> grpc.Server:
    """A grpc.Server (not started, no port yet) serving ``kms.API`` from ``kms``."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="keyservice"),
        handlers=[_handler(KeyServiceServicer(kms))],
        options=[("grpc.max_receive_message_length", _MAX_RECEIVE_MESSAGE), ("grpc.so_reuseport", 0)],
    )
    return server


def add_unix_socket(server: grpc.Server, path: str | os.PathLike[str]) -> str:
    """Listen on a Unix socket whose directory is private to this user (created 0700 if absent).

    Refuses a directory that is not owned by the effective user or that group/others can access,
    and a non-socket file at ``path``; removes a stale socket. Returns the gRPC address.
    """
    sock = Path(path).absolute()
    directory = sock.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise KmsConfigError(
            f"socket directory {str(directory)!r} must be a directory owned by uid {os.geteuid()} "
            "with no group/other permissions (chmod 0700)"
        )
    if sock.is_symlink() or sock.exists():
        if not stat.S_ISSOCK(sock.lstat().st_mode):
            raise KmsConfigError(f"{str(sock)!r} exists and is not a socket")
        sock.unlink()
    address = f"unix:{sock}"
    if server.add_insecure_port(address) == 0:
        raise KmsConfigError(f"cannot listen on {address}")
    return address


def add_mtls_port(server: grpc.Server, host: str, port: int, *, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> int:
    """Listen on TCP with TLS, requiring a client certificate issued by ``ca_pem``. Returns the port."""
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)
    bound = server.add_secure_port(_hostport(host, port), credentials)
    if bound == 0:
        raise KmsConfigError(f"cannot listen on {_hostport(host, port)}")
    return bound


def add_insecure_port(server: grpc.Server, host: str, port: int) -> int:
    """Listen on plaintext TCP (no authentication at all). Returns the port."""
    bound = server.add_insecure_port(_hostport(host, port))
    if bound == 0:
        raise KmsConfigError(f"cannot listen on {_hostport(host, port)}")
    return bound


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
