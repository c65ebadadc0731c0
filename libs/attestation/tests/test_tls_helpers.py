"""The HTTPS test servers' certificates pass strict X.509 verification on every Python version.

Python 3.13 turned on ``ssl.VERIFY_X509_STRICT`` in ``ssl.create_default_context()``; with the
old fixture (no Authority Key Identifier) 22 KDS tests failed there only. These tests set the
flag explicitly, so a fixture that 3.13 would refuse fails on 3.11 and 3.12 too.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tls_helpers import TestTls, make_test_tls


def _strict_client(ca_pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # the 3.13 default, on any version
    return context


def _handshake(tls: TestTls, client: ssl.SSLContext) -> None:
    """One TLS handshake to 127.0.0.1 against ``tls.server_context``; raises the client's error."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with tls.server_context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client refused the certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            assert conn.version() is not None
    finally:
        thread.join(10)
        listener.close()


def test_server_certificate_passes_strict_verification(tmp_path: Path) -> None:
    tls = make_test_tls(tmp_path)
    _handshake(tls, _strict_client(tls.ca_pem))


def test_the_extensions_strict_verification_needs_are_there(tmp_path: Path) -> None:
    tls = make_test_tls(tmp_path)
    ca_ski = tls.ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = tls.server.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    leaf_bc = tls.server.extensions.get_extension_for_class(x509.BasicConstraints)
    assert leaf_bc.critical and not leaf_bc.value.ca
    leaf_usage = tls.server.extensions.get_extension_for_class(x509.KeyUsage)
    assert leaf_usage.critical and leaf_usage.value.digital_signature and not leaf_usage.value.key_cert_sign
    ca_usage = tls.ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ca_usage.critical and ca_usage.value.key_cert_sign
    assert tls.server.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_strict_verification_refuses_a_certificate_without_aki(tmp_path: Path) -> None:
    """The check above can fail: the same server certificate re-signed without its AKI is refused."""
    from cryptography.hazmat.primitives.asymmetric import ec

    tls = make_test_tls(tmp_path)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(tls.ca.subject)
        .issuer_name(tls.ca.subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(tls.ca.not_valid_before_utc)
        .not_valid_after(tls.ca.not_valid_after_utc)
    )
    for ext in tls.ca.extensions:
        if not isinstance(ext.value, x509.SubjectKeyIdentifier):
            ca = ca.add_extension(ext.value, ext.critical)
    ca_cert = ca.add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False).sign(
        ca_key, tls.ca.signature_hash_algorithm
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(tls.server.subject)
        .issuer_name(tls.server.issuer)
        .public_key(tls.server.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(tls.server.not_valid_before_utc)
        .not_valid_after(tls.server.not_valid_after_utc)
    )
    for ext in tls.server.extensions:
        if not isinstance(ext.value, x509.AuthorityKeyIdentifier):
            leaf = leaf.add_extension(ext.value, ext.critical)
    (tmp_path / "server.pem").write_bytes(
        leaf.sign(ca_key, tls.server.signature_hash_algorithm).public_bytes(serialization.Encoding.PEM)
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    without_aki = TestTls(server_context, ca_cert, tls.server)
    lenient = ssl.create_default_context(cadata=ca_pem)
    lenient.verify_flags &= ~ssl.VERIFY_X509_STRICT
    _handshake(without_aki, lenient)  # accepted without the strict checks ...
    with pytest.raises(ssl.SSLCertVerificationError, match="Authority Key Identifier"):
        _handshake(without_aki, _strict_client(ca_pem))  # ... refused with them
