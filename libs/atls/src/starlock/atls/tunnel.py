"""aTLS tunnels for services that know nothing about attestation.

* :func:`start_tunnel_server`: accept aTLS on ``listen``, forward each attested connection to the
  plain TCP service at ``forward`` (normally on loopback);
* :func:`start_tunnel_client`: accept plain TCP on a loopback ``listen`` address and dial the
  tunnel server at ``connect`` with a fresh aTLS handshake per connection.

Both return a running :class:`Tunnel`; ``stop()`` ends every connection. The server side admits a
connection to a handshake only once it has sent a well-formed ClientHello, within the budgets of
``limits`` (:class:`starlock.atls.AdmissionLimits`); established connections are
bounded by ``max_connections`` and closed after ``idle_timeout`` seconds without traffic.
"""

from __future__ import annotations

import ipaddress
import socket

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

__all__ = ["DEFAULT_IDLE_TIMEOUT", "Tunnel", "start_tunnel_client", "start_tunnel_server"]


class Tunnel:
    """A running tunnel endpoint: ``port`` (bound port), ``stop()``, ``last_error`` (client side)."""

    def __init__(self, relay: Relay, errors: BridgeErrors | None = None) -> None:
        self._relay = relay
        self._errors = errors
        self.port: int = relay.listener.getsockname()[1]

    @property
    def last_error(self) -> AtlsError | None:
        return None if self._errors is None else self._errors.last

    @property
    def last_attestation(self) -> PeerAttestation | None:
        """Client side: what the server proved on the last successful dial (with its ``warnings``)."""
        return None if self._errors is None else self._errors.last_attestation

    @property
    def active_connections(self) -> int:
        return self._relay.active_connections

    def stop(self, timeout: float | None = 5.0) -> None:
        self._relay.stop(timeout)

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _listen(endpoint: str, *, loopback_only: bool) -> socket.socket:
    host, port = split_endpoint(endpoint)
    if loopback_only:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise AtlsConfigError(
                f"the tunnel client listens on loopback only (its side of the tunnel is plaintext); got {host!r:.80}"
            )
        host = "127.0.0.1" if host == "localhost" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def start_tunnel_server(
    listen: str,
    forward: str,
    config: ServerConfig,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    limits: AdmissionLimits | None = None,
) -> Tunnel:
    """aTLS on ``listen`` in front of the plain TCP service at ``forward``.

    The issuer attests once first: :class:`~starlock.atls.errors.IssuerUnavailable` if it cannot.
    """
    forward_address = split_endpoint(forward)
    config.check_issuer()
    listener = _listen(listen, loopback_only=False)

    def connect_backend(_conn: AtlsConnection, _remote: str) -> socket.socket:
        sock = socket.create_connection(forward_address, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    handler = front_end_handler(config, connect_backend, None, name="atls-tunnel-server", idle_timeout=idle_timeout)
    limits = limits or AdmissionLimits()
    relay = Relay(listener, handler, name="atls-tunnel-server", max_connections=max_connections, limits=limits)
    return Tunnel(relay.start())


def start_tunnel_client(
    listen: str,
    connect: str,
    config: ClientConfig,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
) -> Tunnel:
    """Plain TCP on a loopback ``listen`` address, carried over aTLS to the tunnel server at ``connect``.

    An issuer (the client attests) attests once first: :class:`~starlock.atls.errors.IssuerUnavailable`.
    """
    split_endpoint(connect)
    config.check_issuer()
    listener = _listen(listen, loopback_only=True)
    errors = BridgeErrors()
    handler = bridge_handler(config, connect, errors, name="atls-tunnel-client", idle_timeout=idle_timeout)
    relay = Relay(listener, handler, name="atls-tunnel-client", max_connections=max_connections)
    return Tunnel(relay.start(), errors)
