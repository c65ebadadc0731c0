"""Helpers shared by the starlock-atls tests (imported as a top-level module from this folder)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

import attrs

from starlock.atls import AtlsConnection, ClientConfig, ServerConfig
from starlock.attestation import Variant, load_attestation_config, validator_for
from starlock.attestation.interfaces import Issuer, Validator


@attrs.frozen
class Pair:
    """An issuer and a validator that accepts its documents, plus a factory for other measurements."""

    name: str
    issuer: Issuer
    validator: Validator
    measurements: dict[str, Any] = attrs.field(factory=dict)

    def validator_with(self, measurements: dict[str, Any]) -> Validator:
        return validator_for(load_attestation_config({"measurements": measurements}, Variant.QEMU_VTPM))


@attrs.define
class Outcome:
    server: AtlsConnection | None = None
    client: AtlsConnection | None = None
    server_error: BaseException | None = None
    client_error: BaseException | None = None


def handshake(
    server: ServerConfig | Callable[[socket.socket], Any],
    client: ClientConfig | Callable[[socket.socket], Any],
    *,
    exchange: bool = True,
) -> Outcome:
    """Run both sides over a socket pair (server in a thread); optionally echo one message."""
    left, right = socket.socketpair()
    outcome = Outcome()

    def serve() -> None:
        try:
            conn = server.accept(left) if isinstance(server, ServerConfig) else server(left)
            outcome.server = conn
            if exchange and isinstance(conn, AtlsConnection):
                data = conn.recv(100)
                conn.sendall(data.upper())
        except BaseException as exc:
            outcome.server_error = exc
            left.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        conn = client.wrap(right, timeout=10) if isinstance(client, ClientConfig) else client(right)
        outcome.client = conn
        if exchange and isinstance(conn, AtlsConnection):
            conn.sendall(b"ping")
            assert conn.recv(100) == b"PING"
    except BaseException as exc:
        outcome.client_error = exc
        right.close()
    thread.join(30)
    return outcome


def client_hello(server_name: bytes | None, *, tls12_only: bool = False) -> bytes:
    """The first flight (ClientHello records) a pyOpenSSL client sends with this SNI."""
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_METHOD)
    if tls12_only:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    conn = SSL.Connection(ctx, None)
    if server_name is not None:
        conn.set_tlsext_host_name(server_name)
    conn.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        conn.do_handshake()
    return conn.bio_read(65536)


def stdlib_client_hello(server_name: str) -> bytes:
    """The ClientHello of Python's ssl module (another TLS stack's framing and extension order)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()
