"""gRPC over aTLS: grpcio on a private Unix socket behind an aTLS front end, and a client bridge.

grpcio cannot run the aTLS handshake itself, so:

* :class:`AttestedServer` adds a Unix-socket port in a fresh 0700 directory to a ``grpc.Server``
  and accepts TCP with an aTLS front end; each attested connection gets its own Unix connection,
  bound to a fresh name in that directory, and the bytes are spliced. A handler reads the
  connection's identity with :func:`attested_peer` (looked up by ``context.peer()``, the Unix name
  only this process can create: a remote client cannot choose or spoof it);
* :func:`attested_channel` returns a ``grpc.Channel`` to a private local bridge (a Unix socket in a
  0700 directory) that dials the server with a fresh aTLS handshake per connection.

Connections that fail attestation are logged (WARNING) and closed before any byte reaches grpcio.
HTTP/2 is spliced unchanged, so deadlines, cancellation and status codes pass through. The front
end's admission limits (``AdmissionLimits``) keep connections that proved nothing from starving
attested ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import grpc

from starlock.atls._admission import AdmissionLimits
from starlock.atls._handshake import AtlsConnection, ClientConfig, ServerConfig, split_endpoint
from starlock.atls._relay import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    BridgeErrors,
    Relay,
    bridge_handler,
    front_end_handler,
)
from starlock.atls._wire import PeerAttestation
from starlock.atls.errors import AtlsConfigError, AtlsError

__all__ = ["AttestedChannel", "AttestedPeer", "AttestedServer", "attested_channel", "attested_peer"]

_log = logging.getLogger("starlock.atls")

_registry: dict[str, AttestedPeer] = {}
_registry_lock = threading.Lock()


@attrs.frozen
class AttestedPeer:
    """Who is on the other end of a gRPC call served through :class:`AttestedServer`.

    ``attestation`` is None when the server has no validators (clients are not attested).
    """

    remote_endpoint: str
    attestation: PeerAttestation | None


def attested_peer(context: grpc.ServicerContext) -> AttestedPeer:
    """The aTLS identity of the connection carrying this call; LookupError if it did not come through aTLS."""
    peer = context.peer()
    with _registry_lock:
        found = _registry.get(peer)
    if found is None:
        raise LookupError(f"gRPC peer {peer!r:.120} did not arrive through an aTLS front end")
    return found


def _private_dir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)  # created 0700 by mkdtemp
    os.chmod(path, 0o700)
    return path


def _tcp_listener(endpoint: str, *, backlog: int = 1024) -> socket.socket:
    host, port = split_endpoint(endpoint)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    return sock


class AttestedServer:
    """Serve ``server`` (a not-yet-started ``grpc.Server``) on ``listen`` (``host:port``) over aTLS.

    ``start()`` checks the config's issuer (one attestation; :class:`IssuerUnavailable` if it cannot
    attest), then starts grpcio and the front end; ``stop(grace)`` stops both and removes the
    private directory. ``port`` is the bound TCP port (useful with ``listen="127.0.0.1:0"``).
    ``max_connections`` bounds established connections, ``idle_timeout`` (seconds, None for none)
    closes silent ones, ``limits`` bounds connections that have not completed their handshake.
    """

    def __init__(
        self,
        server: grpc.Server,
        config: ServerConfig,
        listen: str,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        limits: AdmissionLimits | None = None,
    ) -> None:
        self.server = server
        self.config = config
        self.idle_timeout = idle_timeout
        self.limits = limits or AdmissionLimits()
        self.directory = _private_dir("starlock-atls-grpc-")
        self.socket_path = os.path.join(self.directory, "grpc.sock")
        if server.add_insecure_port(f"unix:{self.socket_path}") == 0:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise AtlsConfigError(f"grpcio could not listen on {self.socket_path}")
        self._listener = _tcp_listener(listen)
        self.port: int = self._listener.getsockname()[1]
        self._peers: dict[int, str] = {}
        handler = front_end_handler(
            config, self._connect_backend, self._release, name="atls-grpc", idle_timeout=idle_timeout
        )
        self._relay = Relay(
            self._listener, handler, name="atls-grpc", max_connections=max_connections, limits=self.limits
        )

    def _connect_backend(self, conn: AtlsConnection, remote: str) -> socket.socket:
        name = os.path.join(self.directory, f"peer-{secrets.token_hex(12)}")
        with _registry_lock:
            _registry[f"unix:{name}"] = AttestedPeer(remote_endpoint=remote, attestation=conn.peer)
            self._peers[id(conn)] = name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(name)  # the name grpcio reports as context.peer(); only we can create it here
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)  # the peer name stays attached to the connected socket
        return sock

    def _release(self, conn: AtlsConnection, _remote: str) -> None:
        with _registry_lock:
            name = self._peers.pop(id(conn), None)
            if name is not None:
                _registry.pop(f"unix:{name}", None)

    def start(self) -> AttestedServer:
        try:
            self.config.check_issuer()
        except AtlsConfigError:
            self._listener.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.server.start()
        self._relay.start()
        _log.info("aTLS gRPC front end listening on port %d (grpcio on %s)", self.port, self.socket_path)
        return self

    def stop(self, grace: float | None = None) -> None:
        self._relay.stop()
        self.server.stop(grace).wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> AttestedServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class AttestedChannel(grpc.Channel):
    """A ``grpc.Channel`` whose connections go through a private local aTLS bridge to ``target``."""

    def __init__(
        self,
        target: str,
        config: ClientConfig,
        *,
        options: Sequence[tuple[str, Any]] = (),
        idle_timeout: float | None = None,
        max_connections: int = 16,
    ) -> None:
        split_endpoint(target)  # validate early
        self.target = target
        self.directory = _private_dir("starlock-atls-bridge-")
        self.socket_path = os.path.join(self.directory, "bridge.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(16)
        self._errors = BridgeErrors()
        handler = bridge_handler(config, target, self._errors, name="atls-bridge", idle_timeout=idle_timeout)
        self._relay = Relay(listener, handler, name="atls-bridge", max_connections=max_connections)
        self._relay.start()
        self._channel = grpc.insecure_channel(f"unix:{self.socket_path}", options=list(options))

    @property
    def last_error(self) -> AtlsError | None:
        """Why the last aTLS dial failed (gRPC reports only UNAVAILABLE), or None."""
        return self._errors.last

    @property
    def last_attestation(self) -> PeerAttestation | None:
        """What the server proved on the last successful dial (``.warnings`` included), or None."""
        return self._errors.last_attestation

    def subscribe(self, callback: Callable[[Any], None], try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[[Any], None]) -> None:
        self._channel.unsubscribe(callback)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.unary_unary(*args, **kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.unary_stream(*args, **kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_unary(*args, **kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_stream(*args, **kwargs)

    def close(self) -> None:
        self._channel.close()
        self._relay.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> AttestedChannel:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def attested_channel(
    target: str, config: ClientConfig, *, options: Iterable[tuple[str, Any]] = (), idle_timeout: float | None = None
) -> AttestedChannel:
    """A gRPC channel to ``target`` (``host:port`` of an aTLS front end), attested per ``config``."""
    return AttestedChannel(target, config, options=tuple(options), idle_timeout=idle_timeout)
