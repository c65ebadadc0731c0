"""Client of ``/kms.API/GetDataKey`` (``starlock-keyservice``): a Unix socket or mutual TLS.

Upstream dials the key service in plaintext over the cluster network; Starlock's key service
serves only a Unix socket or mutual TLS, so the endpoint is ``unix:/path/to/socket`` or
``host:port`` with a client certificate.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc
from starlock.joinservice.errors import JoinServiceError, Unavailable

__all__ = ["KeyServiceClient"]

MEASUREMENT_SECRET_ID = "measurementSecret"  # noqa: S105 - a key id, not a secret
SSH_CA_ID = "ca_emergency_ssh"
DEFAULT_TIMEOUT = 10.0
# Reconnect quickly after the key service restarts (grpcio's default backoff grows to minutes).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)


class KeyServiceClient:
    def __init__(
        self,
        endpoint: str,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_ca: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self._timeout = timeout
        if endpoint.startswith("unix:"):
            if any((tls_cert, tls_key, tls_ca)):
                raise JoinServiceError("key service: TLS files are for a TCP endpoint, not a Unix socket")
            self._channel = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
        else:
            if not (tls_cert and tls_key and tls_ca):
                raise JoinServiceError(
                    f"key service endpoint {endpoint!r}: a TCP endpoint needs mutual TLS "
                    "(--key-service-tls-cert, --key-service-tls-key, --key-service-tls-ca); "
                    "or give unix:/path/to/socket"
                )
            try:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=tls_ca.read_bytes(),
                    private_key=tls_key.read_bytes(),
                    certificate_chain=tls_cert.read_bytes(),
                )
            except OSError as exc:
                raise JoinServiceError(f"key service: cannot read a TLS file ({exc.strerror})") from None
            self._channel = grpc.secure_channel(endpoint, creds, options=_CHANNEL_OPTIONS)
        self._stub = keyservice_pb2_grpc.APIStub(self._channel)  # type: ignore[no-untyped-call]  # generated, untyped

    def __repr__(self) -> str:
        return f"KeyServiceClient({self.endpoint!r})"

    def get_data_key(self, data_key_id: str, length: int, *, timeout: float | None = None) -> bytes:
        """The data key for the bare id (the key service adds ``key-``); errors never hold the key."""
        budget = self._timeout if timeout is None else max(0.05, min(self._timeout, timeout))
        try:
            reply = self._stub.GetDataKey(
                keyservice_pb2.GetDataKeyRequest(data_key_id=data_key_id, length=length), timeout=budget
            )
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            details = (exc.details() if hasattr(exc, "details") else "") or ""
            message = f"key service {self.endpoint}: {code.name}: {details[:200]}"
            if code in _RETRYABLE:
                raise Unavailable(message) from None
            raise JoinServiceError(message) from None
        if len(reply.data_key) != length:
            raise JoinServiceError(f"key service returned {len(reply.data_key)} bytes for a {length}-byte key")
        return bytes(reply.data_key)

    def ping(self, timeout: float = 5.0) -> None:
        """One ``GetDataKey`` for the measurement secret: the readiness probe (result discarded)."""
        self.get_data_key(MEASUREMENT_SECRET_ID, 32, timeout=timeout)

    def close(self) -> None:
        self._channel.close()
