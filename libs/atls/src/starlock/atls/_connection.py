"""An established aTLS connection, the per-connection warning log, and endpoint strings."""

from __future__ import annotations

import contextlib
import logging
import socket
import time

from OpenSSL import SSL

from starlock.atls._io import retry
from starlock.atls._wire import PeerAttestation
from starlock.atls.errors import AtlsConfigError

__all__ = ["AtlsConnection", "describe_address", "log_warnings", "split_endpoint"]

_log = logging.getLogger("starlock.atls")


class AtlsConnection:
    """An established aTLS connection: blocking ``recv``/``sendall`` plus what the peer proved.

    ``peer`` is None when this side has no validators (the peer was not attested).
    """

    def __init__(
        self, ssl: SSL.Connection, sock: socket.socket, peer: PeerAttestation | None, timeout: float | None
    ) -> None:
        self.ssl = ssl
        self.sock = sock
        self.peer = peer
        self.timeout = timeout

    @property
    def warnings(self) -> tuple[str, ...]:
        """The validator's warnings about the peer (warn-only measurements, unpinned keys, ...)."""
        return () if self.peer is None else self.peer.warnings

    @property
    def alpn_protocol(self) -> bytes | None:
        proto = self.ssl.get_alpn_proto_negotiated()
        return proto or None

    @property
    def tls_version(self) -> str:
        return self.ssl.get_protocol_version_name()

    def fileno(self) -> int:
        return self.sock.fileno()

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" when the peer closed (close_notify or EOF)."""
        try:
            return retry(self.sock, self._deadline(), lambda: self.ssl.recv(size))
        except SSL.ZeroReturnError:
            return b""
        except SSL.SysCallError as exc:
            if exc.args and exc.args[0] == -1:
                return b""  # EOF without close_notify
            raise

    def sendall(self, data: bytes) -> None:
        deadline = self._deadline()
        view = memoryview(data)
        while view:
            chunk = bytes(view[: 16 * 1024])
            sent = retry(self.sock, deadline, lambda chunk=chunk: self.ssl.send(chunk))  # type: ignore[misc]
            view = view[sent:]

    def close(self) -> None:
        with contextlib.suppress(SSL.Error):
            self.ssl.shutdown()
        self.sock.close()

    def __enter__(self) -> AtlsConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def log_warnings(side: str, sock: socket.socket, peer: PeerAttestation | None) -> None:
    """One WARNING line per validator warning, per connection (upstream's validators log them the same way)."""
    if peer is None or not peer.warnings:
        return
    try:
        remote = describe_address(sock.getpeername())
    except OSError:
        remote = "unknown"
    for warning in peer.warnings:
        _log.warning(
            "aTLS %s: %s attestation of %s accepted with a warning: %s", side, peer.variant.value, remote, warning
        )


def describe_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"[{address[0]}]:{address[1]}" if ":" in str(address[0]) else f"{address[0]}:{address[1]}"
    return str(address) or "local"


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise AtlsConfigError(f"endpoint {endpoint!r:.80} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
