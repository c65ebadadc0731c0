"""Every rejection names its reason: replay, key binding, faulty validators, OIDs, bounds, signatures, PCRs.

A hostile peer is played by a raw pyOpenSSL endpoint that serves whatever certificate the test
builds (with our own certificate builder, so only the one property under test differs).
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest
from atls_helpers import Pair, handshake
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto

from starlock.atls import (
    AtlsConfigError,
    AttestationRejected,
    CertificateError,
    ClientConfig,
    DummyIssuer,
    DummyValidator,
    HandshakeError,
    NoCompatibleAttestation,
    NonceError,
    ServerConfig,
    UserDataMismatch,
)
from starlock.atls._handshake import _verify_callback
from starlock.atls._io import retry
from starlock.atls._wire import MAX_EXTENSION_SIZE, make_certificate
from starlock.attestation.errors import MeasurementMismatch, NonceMismatch
from starlock.attestation.interfaces import ValidationResult
from starlock.attestation.variant import Variant


def _raw_server(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Callable[[socket.socket], Any]:
    """A TLS server that serves a fixed certificate whatever the client's nonce (a hostile server)."""

    def serve(sock: socket.socket) -> None:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
        conn = SSL.Connection(ctx, sock)
        conn.set_accept_state()
        sock.setblocking(False)
        with contextlib.suppress(SSL.Error):
            retry(sock, None, conn.do_handshake)
        sock.close()

    return serve


def _client_error(server: Callable[[socket.socket], Any] | ServerConfig, client: ClientConfig) -> BaseException:
    outcome = handshake(server, client, exchange=False)
    assert outcome.client_error is not None, "the client accepted the peer"
    return outcome.client_error


# --- stale nonce: a certificate replayed on a new connection ------------------------------------


def test_replayed_certificate_is_stale(pair: Pair) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_certificate(key, pair.issuer, b"\x01" * 32)  # issued for an earlier connection's nonce
    error = _client_error(_raw_server(cert, key), ClientConfig(validators=[pair.validator]))
    assert isinstance(error, AttestationRejected)
    assert isinstance(error.cause, NonceMismatch) and error.reason == "nonce"
    assert "rejected (nonce)" in str(error)


# --- key binding ---------------------------------------------------------------------------------


class _WrongKeyIssuer:
    """Issues a genuine document, but for another key's hash (a document lifted from another connection)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def variant(self) -> Variant:
        return Variant(self.inner.variant)

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        return bytes(self.inner.issue(b"\x77" * 32, nonce))


def test_document_for_another_key(pair: Pair) -> None:
    error = _client_error(ServerConfig(_WrongKeyIssuer(pair.issuer)), ClientConfig(validators=[pair.validator]))
    assert isinstance(error, UserDataMismatch)
    assert "certificate hash does not match user data" in str(error) and "7777" in str(error)


def test_client_document_for_another_key(dummy_pair: Pair) -> None:
    outcome = handshake(
        ServerConfig(validators=[dummy_pair.validator]), ClientConfig(_WrongKeyIssuer(dummy_pair.issuer))
    )
    assert isinstance(outcome.server_error, UserDataMismatch)


# --- validators ----------------------------------------------------------------------------------


class _Raising:
    variant = Variant.DUMMY

    def validate(self, document: bytes, nonce: bytes) -> ValidationResult:
        raise RuntimeError("validator backend unreachable")


def test_validator_that_raises(dummy_pair: Pair) -> None:
    error = _client_error(ServerConfig(dummy_pair.issuer), ClientConfig(validators=[_Raising()]))
    assert isinstance(error, AttestationRejected)
    assert "RuntimeError: validator backend unreachable" in str(error)


def test_no_matching_oid_lists_what_was_seen(dummy_pair: Pair, qemu_pair: Pair) -> None:
    error = _client_error(ServerConfig(dummy_pair.issuer), ClientConfig(validators=[qemu_pair.validator]))
    assert isinstance(error, NoCompatibleAttestation)
    assert error.seen == ("1.3.9900.1.1",) and error.accepted == ("1.3.9900.5.1",)
    assert "got extension OIDs [1.3.9900.1.1]" in str(error)


def test_measurements_that_do_not_match(qemu_pair: Pair) -> None:
    measurements = dict(qemu_pair.measurements)
    measurements["4"] = {"expected": "ab" * 32, "warnOnly": False}
    validator = qemu_pair.validator_with(measurements)
    error = _client_error(ServerConfig(qemu_pair.issuer), ClientConfig(validators=[validator]))
    assert isinstance(error, AttestationRejected) and isinstance(error.cause, MeasurementMismatch)
    assert error.reason == "measurements" and "at index 4" in str(error)


def test_client_measurements_that_do_not_match(qemu_pair: Pair) -> None:
    measurements = dict(qemu_pair.measurements)
    measurements["9"] = {"expected": "cd" * 32, "warnOnly": False}
    server = ServerConfig(validators=[qemu_pair.validator_with(measurements)])
    outcome = handshake(server, ClientConfig(qemu_pair.issuer), exchange=True)
    assert isinstance(outcome.server_error, AttestationRejected)
    assert "at index 9" in str(outcome.server_error)
    assert outcome.client_error is not None  # the client learns of it through the alert


def test_dummy_is_refused_unless_enabled() -> None:
    with pytest.raises(AtlsConfigError, match="insecure=True"):
        DummyIssuer()
    with pytest.raises(AtlsConfigError, match="insecure=True"):
        DummyValidator()


def test_dummy_enabled_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    DummyValidator(insecure=True)
    assert any(r.levelname == "WARNING" and "proves NOTHING" in r.message for r in caplog.records)


# --- bounds --------------------------------------------------------------------------------------


def _raw_client(server_name: bytes | None) -> Callable[[socket.socket], Any]:
    def dial(sock: socket.socket) -> None:
        conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), sock)
        if server_name is not None:
            conn.set_tlsext_host_name(server_name)
        conn.set_connect_state()
        sock.setblocking(False)
        with contextlib.suppress(SSL.Error):
            retry(sock, None, conn.do_handshake)
        sock.close()

    return dial


@pytest.mark.parametrize(
    ("server_name", "message"),
    [
        (b"A" * 200, "SNI is 200 bytes, more than the limit 88"),
        (None, "client sent no nonce"),
        (b"not*base64", "SNI is not standard base64"),
        (b"AAAA", "3-byte nonce"),
    ],
)
def test_bad_sni(dummy_pair: Pair, server_name: bytes | None, message: str) -> None:
    outcome = handshake(ServerConfig(dummy_pair.issuer), _raw_client(server_name), exchange=False)
    assert isinstance(outcome.server_error, NonceError)
    assert message in str(outcome.server_error)


class _BigIssuer:
    variant = Variant.DUMMY

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        return b"x" * (MAX_EXTENSION_SIZE + 1)


def test_oversized_extension(dummy_pair: Pair) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_certificate(key, _BigIssuer(), b"\x01" * 32, max_extension_size=MAX_EXTENSION_SIZE + 1)
    error = _client_error(_raw_server(cert, key), ClientConfig(validators=[dummy_pair.validator]))
    assert isinstance(error, CertificateError)
    assert f"is {MAX_EXTENSION_SIZE + 1} bytes, more than the limit {MAX_EXTENSION_SIZE}" in str(error)


def test_issuer_side_refuses_oversized_documents() -> None:
    with pytest.raises(AtlsConfigError, match="more than the aTLS extension limit"):
        make_certificate(ec.generate_private_key(ec.SECP256R1()), _BigIssuer(), b"\x01" * 32)


# --- certificates --------------------------------------------------------------------------------


def test_plain_tls_client_without_certificate(dummy_pair: Pair) -> None:
    """A stdlib TLS client answers the CertificateRequest with no certificate."""

    def plain_client(sock: socket.socket) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with ctx.wrap_socket(sock, server_hostname="A" * 44) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    outcome = handshake(ServerConfig(validators=[dummy_pair.validator]), plain_client, exchange=False)
    assert isinstance(outcome.server_error, CertificateError)
    assert "client presented no certificate" in str(outcome.server_error)


def test_self_signature_that_does_not_verify(dummy_pair: Pair) -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    good = make_certificate(key, dummy_pair.issuer, b"\x01" * 32)
    now = datetime.datetime.now(datetime.UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(good.subject)
        .issuer_name(good.issuer)
        .public_key(key.public_key())
        .serial_number(good.serial_number)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(other, hashes.SHA256())  # signed by another key
    )
    error = _client_error(_raw_server(forged, key), ClientConfig())  # even without validators
    assert isinstance(error, CertificateError)
    assert "self-signature does not verify" in str(error)


def test_expired_certificate(dummy_pair: Pair) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    old = make_certificate(key, None, b"", now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3))
    error = _client_error(_raw_server(old, key), ClientConfig())
    assert isinstance(error, CertificateError) and "is not valid at" in str(error)


def test_client_without_issuer_sends_unattested_certificate(dummy_pair: Pair) -> None:
    outcome = handshake(ServerConfig(validators=[dummy_pair.validator]), ClientConfig())
    assert isinstance(outcome.server_error, NoCompatibleAttestation)
    assert "got extension OIDs []" in str(outcome.server_error)


# --- a failed TLS handshake is never an accepted connection --------------------------------------


def _not_tls(first_bytes: bytes) -> Callable[[socket.socket], Any]:
    def dial(sock: socket.socket) -> None:
        sock.sendall(first_bytes)
        sock.close()

    return dial


@pytest.mark.parametrize("first_bytes", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""], ids=["http", "hang-up"])
@pytest.mark.parametrize("client_attestation", [False, True])
def test_server_refuses_a_failed_tls_handshake(dummy_pair: Pair, first_bytes: bytes, client_attestation: bool) -> None:
    validators = [dummy_pair.validator] if client_attestation else []
    outcome = handshake(ServerConfig(dummy_pair.issuer, validators), _not_tls(first_bytes), exchange=False)
    assert outcome.server is None
    assert type(outcome.server_error) is HandshakeError
    assert "TLS handshake failed" in str(outcome.server_error)


def test_server_handshake_timeout_is_not_an_accepted_connection(dummy_pair: Pair) -> None:
    left, right = socket.socketpair()
    try:
        server = ServerConfig(dummy_pair.issuer, handshake_timeout=0.2)
        with pytest.raises(HandshakeError, match=r"timed out after 0\.2 s"):
            server.accept(left)  # the peer never sends a ClientHello
        assert left.fileno() == -1  # closed, as on every failure
    finally:
        left.close()
        right.close()


def test_refused_server_learns_of_it_through_the_alert(dummy_pair: Pair) -> None:
    """The client aborts the handshake when it refuses the server's certificate: the server's
    accept fails too, it never holds a connection the client has refused."""
    server = ServerConfig(_WrongKeyIssuer(dummy_pair.issuer))
    outcome = handshake(server, ClientConfig(validators=[dummy_pair.validator]), exchange=False)
    assert isinstance(outcome.client_error, UserDataMismatch)
    assert outcome.server is None
    assert type(outcome.server_error) is HandshakeError
    assert "TLS handshake failed" in str(outcome.server_error) and "alert" in str(outcome.server_error)


def test_ca_issued_chain_is_refused_as_not_self_signed(dummy_pair: Pair) -> None:
    """A server that sends a CA-issued leaf and its CA: OpenSSL calls back for the CA first (depth 1),
    which aTLS leaves to the leaf check, and the leaf is then refused for what it is."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "hostile CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    attested = make_certificate(key, dummy_pair.issuer, b"\x01" * 32)
    leaf = (
        x509.CertificateBuilder().subject_name(attested.subject).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(2).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    depths: list[int] = []

    def serve(sock: socket.socket) -> None:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.use_certificate(leaf)
        ctx.add_extra_chain_cert(ca)
        ctx.use_privatekey(key)
        conn = SSL.Connection(ctx, sock)
        conn.set_accept_state()
        sock.setblocking(False)
        with contextlib.suppress(SSL.Error):
            retry(sock, None, conn.do_handshake)
        sock.close()

    client = ClientConfig(validators=[dummy_pair.validator])
    original = client._ctx

    def recording_verify(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        depths.append(depth)
        return _verify_callback(conn, cert, errno, depth, ok)

    original.set_verify(SSL.VERIFY_PEER, recording_verify)
    error = _client_error(serve, client)
    assert 1 in depths  # the chain reached the callback above the leaf
    assert isinstance(error, CertificateError)
    assert "peer certificate is not self-signed" in str(error)
