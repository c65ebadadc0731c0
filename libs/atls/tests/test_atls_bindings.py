"""The private OpenSSL bindings: they work, and their absence fails loudly at import."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest
from cryptography import x509
from OpenSSL import SSL

from starlock.atls import BindingsUnavailable, _bindings
from starlock.atls._io import retry
from starlock.atls._wire import ca_name_der


def test_ca_name_and_cert_callback_reach_the_client() -> None:
    """The server's raw CA name arrives intact, and the client callback runs with it available."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_bytes(ca_name_der(b"\x05" * 32))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    server_ctx = SSL.Context(SSL.TLS_METHOD)
    server_ctx.use_certificate(cert)
    server_ctx.use_privatekey(key)
    server_ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
    _bindings.set_client_ca_name(server_ctx, ca_name_der(b"\x05" * 32))
    client_ctx = SSL.Context(SSL.TLS_METHOD)
    _bindings.install_cert_callback(client_ctx)
    seen: list[list[x509.Name]] = []

    def on_request(conn: SSL.Connection) -> None:
        seen.append(conn.get_client_ca_list(as_cryptography=True))
        conn.use_certificate(cert)
        conn.use_privatekey(key)

    left, right = socket.socketpair()
    server = SSL.Connection(server_ctx, left)
    server.set_accept_state()
    left.setblocking(False)
    thread = threading.Thread(target=lambda: retry(left, None, server.do_handshake))
    thread.start()
    client = SSL.Connection(client_ctx, right)
    client.set_connect_state()
    right.setblocking(False)
    with _bindings.register_cert_handler(client, on_request):
        retry(right, None, client.do_handshake)
    thread.join(10)
    assert seen == [[name]]
    assert server.get_peer_certificate(as_cryptography=True) == cert


def test_unregistered_connection_fails_closed() -> None:
    """A connection the callback does not know gets no certificate and the handshake fails."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    _bindings.install_cert_callback(ctx)
    assert _bindings._on_cert_request(_bindings._ffi.cast("SSL *", 1), _bindings._ffi.NULL) == 0


def test_invalid_name_der_is_refused() -> None:
    with pytest.raises(ValueError, match="DER"):
        _bindings.set_client_ca_name(SSL.Context(SSL.TLS_METHOD), b"\x30\x05junk")


def test_missing_binding_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import OpenSSL._util

    class Stripped:
        def __getattr__(self, name: str) -> object:
            if name == "SSL_CTX_set_cert_cb":
                raise AttributeError(name)
            return getattr(_bindings._lib, name)

    monkeypatch.setattr(OpenSSL._util, "lib", Stripped())
    with pytest.raises(BindingsUnavailable, match="SSL_CTX_set_cert_cb"):
        _bindings._load()


def test_import_fails_loudly_without_the_bindings() -> None:
    """A pyOpenSSL without the callback binding makes ``import starlock.atls`` fail, never skip attestation."""
    code = (
        "import OpenSSL._util as u\n"
        "real = u.lib\n"
        "class Stripped:\n"
        "    def __getattr__(self, n):\n"
        "        if n == 'SSL_CTX_set_cert_cb': raise AttributeError(n)\n"
        "        return getattr(real, n)\n"
        "u.lib = Stripped()\n"
        "import starlock.atls\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "BindingsUnavailable" in proc.stderr and "SSL_CTX_set_cert_cb" in proc.stderr


def test_use_certificate_der() -> None:
    from cryptography.hazmat.primitives import serialization
    from OpenSSL._util import lib

    from starlock.atls._wire import CertificateKey, make_certificate_der

    key = CertificateKey.generate()
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.use_privatekey(key.private_key)
    conn = SSL.Connection(ctx, None)
    der = make_certificate_der(key, None, b"")
    _bindings.use_certificate_der(conn, der)
    installed = conn.get_certificate(as_cryptography=True)
    assert installed is not None and installed.public_bytes(serialization.Encoding.DER) == der
    with pytest.raises(ValueError, match=r"not a DER-encoded X\.509 certificate"):
        _bindings.use_certificate_der(conn, der[:-1])
    assert lib.ERR_peek_error() == 0  # no stale OpenSSL error left for the next call
