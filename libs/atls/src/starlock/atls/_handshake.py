"""The aTLS handshake over pyOpenSSL (reference: spec-attestation §A1), both directions.

:class:`ServerConfig` and :class:`ClientConfig` mirror Go's ``CreateAttestationServerTLSConfig``
and ``CreateAttestationClientTLSConfig``: an issuer (this side attests) and validators (the peer
must attest). Each handshake runs on a connected socket and returns an :class:`AtlsConnection`
whose ``peer`` is what the peer proved. Differences from upstream: a fresh client nonce per
connection (never per config), a required non-empty nonce, bounded SNI and extension sizes, the
self-signature of the peer certificate is checked, and no session resumption.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from OpenSSL import SSL, crypto

from starlock.atls import _bindings
from starlock.atls._connection import AtlsConnection, log_warnings, split_endpoint
from starlock.atls._io import retry
from starlock.atls._log import V4, V6
from starlock.atls._wire import (
    NONCE_SIZE,
    CertificateKey,
    PeerAttestation,
    ca_name_der,
    decode_sni_nonce,
    encode_nonce,
    make_certificate_der,
    nonce_from_ca_names,
    verify_peer_certificate,
)
from starlock.atls.errors import (
    AtlsConfigError,
    AtlsError,
    CertificateError,
    HandshakeError,
    IssuerUnavailable,
    NonceError,
)
from starlock.attestation.interfaces import Issuer, Validator

__all__ = ["ALPN_PROTOCOLS", "AtlsConnection", "ClientConfig", "ServerConfig", "check_issuer", "split_endpoint"]

_log = logging.getLogger("starlock.atls")

#: ALPN offered by clients and preferred in this order by servers (Go ``NextProtos``).
ALPN_PROTOCOLS = (b"http/1.1", b"h2")
DEFAULT_HANDSHAKE_TIMEOUT = 30.0
#: A server's handshake deadline: a client that has sent its ClientHello answers within a round
#: trip plus its own attestation; a slot held longer is likely held on purpose.
DEFAULT_SERVER_HANDSHAKE_TIMEOUT = 10.0


def _validators_by_oid(validators: Iterable[Validator]) -> dict[str, Validator]:
    by_oid: dict[str, Validator] = {}
    for validator in validators:
        oid = validator.variant.oid
        if oid in by_oid:
            raise AtlsConfigError(f"two validators for variant {validator.variant.value} ({oid})")
        by_oid[oid] = validator
    return by_oid


class _State:
    """Per-connection handshake state, reachable from OpenSSL callbacks via ``get_app_data``."""

    __slots__ = ("error", "nonce", "peer", "peer_der", "validators", "verified")

    def __init__(self, nonce: bytes, validators: Mapping[str, Validator]) -> None:
        self.nonce = nonce  # the nonce the peer's document must be bound to
        self.validators = validators
        self.peer: PeerAttestation | None = None
        self.peer_der: bytes | None = None
        self.verified = False
        self.error: AtlsError | None = None

    def fail(self, exc: BaseException, what: str) -> None:
        if self.error is None:
            self.error = exc if isinstance(exc, AtlsError) else HandshakeError(f"{what}: {type(exc).__name__}: {exc}")


def _verify_callback(conn: SSL.Connection, cert: crypto.X509, _errno: int, depth: int, _ok: int) -> bool:
    """OpenSSL's chain verification is replaced (Go ``InsecureSkipVerify``) by the aTLS checks of the leaf."""
    if depth != 0:
        return True
    state: _State = conn.get_app_data()
    der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
    if state.error is not None:
        return False
    if state.verified:
        return der == state.peer_der  # OpenSSL calls back once per finding; a swapped leaf is refused
    try:
        state.peer = verify_peer_certificate(der, state.nonce, state.validators)
    except Exception as exc:
        state.fail(exc, "verifying the peer certificate failed")
        return False
    state.peer_der = der
    state.verified = True
    return True


def _base_context() -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)  # attestation is per connection: no resumption
    return ctx


def _select_alpn(_conn: SSL.Connection, offered: list[bytes]) -> Any:
    """Go's server rule: the first of the server's protocols the client offers."""
    for proto in ALPN_PROTOCOLS:
        if proto in offered:
            return proto
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _handshake(conn: SSL.Connection, sock: socket.socket, state: _State, timeout: float | None) -> None:
    sock.setblocking(False)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        retry(sock, deadline, conn.do_handshake)
    except TimeoutError:
        raise HandshakeError(f"aTLS handshake timed out after {timeout} s") from None
    except SSL.Error as exc:
        if state.error is not None:
            raise state.error from None
        raise HandshakeError(f"TLS handshake failed: {_describe(exc)}") from None
    except OSError as exc:
        raise HandshakeError(f"TLS handshake failed: {exc.strerror or exc}") from None
    if state.error is not None:
        raise state.error
    if not state.verified:
        raise CertificateError("peer presented no certificate (an attested certificate is required)")


def check_issuer(issuer: Issuer | None) -> None:
    """Have ``issuer`` attest once (a random key hash and nonce); :class:`IssuerUnavailable` if it cannot."""
    if issuer is None:
        return
    try:
        make_certificate_der(CertificateKey.generate(), issuer, secrets.token_bytes(NONCE_SIZE))
    except Exception as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the cause wrote
        raise IssuerUnavailable(f"the {issuer.variant.value} issuer cannot attest: {detail[:500]}") from None


def _describe(exc: SSL.Error) -> str:
    if isinstance(exc, SSL.SysCallError):
        return "connection closed by the peer" if exc.args and exc.args[0] == -1 else f"socket error {exc.args}"
    reasons = [str(item[2]) for item in (exc.args[0] if exc.args and isinstance(exc.args[0], list) else [])]
    return "; ".join(reasons) or str(exc) or type(exc).__name__


#: Idle server contexts kept for reuse per config (client attestation); more are dropped.
_MAX_IDLE_CONTEXTS = 64


class ServerConfig:
    """The server side: ``issuer`` (None: the server does not attest), ``validators`` (clients must attest).

    One ECDSA P-256 key per config, as upstream; a certificate per connection for the client's nonce;
    when validators are given, a fresh 32-byte server nonce per connection in the CA list. A
    handshake must complete within ``handshake_timeout`` (10 s; clients get 30 s).

    The server nonce travels in the context's CA list, which OpenSSL reads from the ``SSL_CTX`` when
    it writes the CertificateRequest (an ``SSL`` does not copy it). So a context is held by one
    handshake at a time: it is taken from a pool of idle ones (creating one costs ~0.4 ms), given
    that connection's nonce, and returned once the handshake is over. Renegotiation is off and
    post-handshake authentication is never requested, so the list is not read again afterwards.
    """

    def __init__(
        self,
        issuer: Issuer | None = None,
        validators: Iterable[Validator] = (),
        *,
        handshake_timeout: float | None = DEFAULT_SERVER_HANDSHAKE_TIMEOUT,
    ) -> None:
        self.issuer = issuer
        self.validators = _validators_by_oid(validators)
        self.handshake_timeout = handshake_timeout
        self._cert_key = CertificateKey.generate()
        self._key = self._cert_key.private_key
        self._shared = None if self.validators else self._context()
        self._idle: list[SSL.Context] = []
        self._idle_lock = threading.Lock()

    def _context(self) -> SSL.Context:
        ctx = _base_context()
        ctx.use_privatekey(self._key)  # once per context; each connection only adds its certificate
        ctx.set_tlsext_servername_callback(self._on_client_hello)
        ctx.set_alpn_select_callback(_select_alpn)
        if self.validators:
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_callback)
        return ctx

    def check_issuer(self) -> None:
        """Attest once now: :class:`IssuerUnavailable` (one line) when the issuer cannot (no TPM, ...)."""
        check_issuer(self.issuer)

    def _take_context(self, server_nonce: bytes) -> SSL.Context:
        """An idle context (or a new one) carrying ``server_nonce`` as its one CA name, held until released."""
        with self._idle_lock:
            ctx = self._idle.pop() if self._idle else None
        if ctx is None:
            ctx = self._context()
        _bindings.set_client_ca_name(ctx, ca_name_der(server_nonce))
        return ctx

    def _release_context(self, ctx: SSL.Context) -> None:
        with self._idle_lock:
            if len(self._idle) < _MAX_IDLE_CONTEXTS:
                self._idle.append(ctx)

    def _on_client_hello(self, conn: SSL.Connection) -> None:
        state: _State = conn.get_app_data()
        try:
            client_nonce = decode_sni_nonce(conn.get_servername())
            _bindings.use_certificate_der(conn, make_certificate_der(self._cert_key, self.issuer, client_nonce))
        except Exception as exc:  # no certificate is installed, so the handshake cannot complete
            state.fail(exc, "issuing the server's attested certificate failed")
            return
        if _log.isEnabledFor(V6):
            _log.log(V6, "aTLS server: certificate issued for client nonce %s", client_nonce.hex())

    def accept(self, sock: socket.socket, *, timeout: float | None = None) -> AtlsConnection:
        """Run the server handshake on an accepted socket; raises an :class:`AtlsError` on rejection.

        The socket is closed when the handshake fails.
        """
        if self._shared is not None:
            server_nonce, ctx = b"", self._shared
        else:
            server_nonce = secrets.token_bytes(NONCE_SIZE)
            ctx = self._take_context(server_nonce)
        state = _State(server_nonce, self.validators)
        if not self.validators:
            state.verified = True  # no client certificate is requested
        try:
            conn = SSL.Connection(ctx, sock)
            conn.set_app_data(state)
            conn.set_accept_state()
            _handshake(conn, sock, state, self.handshake_timeout)
        except HandshakeError as exc:
            sock.close()
            if state.error is None and conn.get_servername() is None and "certificate" in str(exc):
                raise NonceError(
                    "client sent no nonce: no SNI (Starlock requires a fresh nonce per connection)"
                ) from None
            if self.validators and "peer did not return a certificate" in str(exc):
                raise CertificateError("client presented no certificate (client attestation is required)") from None
            raise
        except BaseException:
            sock.close()
            raise
        finally:
            if ctx is not self._shared:
                self._release_context(ctx)  # the handshake is over: its CA list is no longer read
        log_warnings("server", sock, state.peer)
        return AtlsConnection(conn, sock, state.peer, timeout)


class ClientConfig:
    """The client side: ``issuer`` (None: the client does not attest), ``validators`` (the server must attest).

    Every handshake uses a fresh 32-byte nonce (upstream reuses one per config) and, when the server
    asks for a certificate, a fresh ECDSA P-256 key.
    """

    def __init__(
        self,
        issuer: Issuer | None = None,
        validators: Iterable[Validator] = (),
        *,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        self.issuer = issuer
        self.validators = _validators_by_oid(validators)
        self.handshake_timeout = handshake_timeout
        ctx = _base_context()
        ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
        ctx.set_alpn_protos(list(ALPN_PROTOCOLS))
        _bindings.install_cert_callback(ctx)
        self._ctx = ctx

    def check_issuer(self) -> None:
        """Attest once now: :class:`IssuerUnavailable` (one line) when the issuer cannot (no TPM, ...)."""
        check_issuer(self.issuer)

    def _on_cert_request(self, conn: SSL.Connection) -> None:
        state: _State = conn.get_app_data()
        try:
            server_nonce = nonce_from_ca_names(conn.get_client_ca_list(as_cryptography=True))
            key = CertificateKey.generate()  # fresh per connection
            _bindings.use_certificate_der(conn, make_certificate_der(key, self.issuer, server_nonce))
            conn.use_privatekey(key.private_key)
        except Exception as exc:
            state.fail(exc, "issuing the client's attested certificate failed")
            raise
        if _log.isEnabledFor(V6):
            _log.log(V6, "aTLS client: certificate issued for server nonce %s", server_nonce.hex())

    def wrap(self, sock: socket.socket, *, timeout: float | None = None) -> AtlsConnection:
        """Run the client handshake on a connected socket (closed on failure)."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        state = _State(nonce, self.validators)
        conn = SSL.Connection(self._ctx, sock)
        conn.set_app_data(state)
        conn.set_tlsext_host_name(encode_nonce(nonce).encode("ascii"))
        conn.set_connect_state()
        try:
            with _bindings.register_cert_handler(conn, self._on_cert_request):
                _handshake(conn, sock, state, self.handshake_timeout)
        except BaseException:
            sock.close()
            raise
        log_warnings("client", sock, state.peer)
        if _log.isEnabledFor(V4):
            _log.log(
                V4, "aTLS client: connected (%s, peer %s)", conn.get_protocol_version_name(), _peer_name(state.peer)
            )
        return AtlsConnection(conn, sock, state.peer, timeout)

    def connect(self, endpoint: str | tuple[str, int], *, timeout: float | None = None) -> AtlsConnection:
        """Dial ``host:port`` and run the handshake."""
        host, port = split_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
        connect_timeout = self.handshake_timeout
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise HandshakeError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.wrap(sock, timeout=timeout)


def _peer_name(peer: PeerAttestation | None) -> str:
    return "not attested" if peer is None else f"attested {peer.variant.value}"
