"""An independent client: ``openssl s_client`` fetches our server's certificate for a nonce it chose.

The certificate is then checked with the validator alone (no code of our handshake), and its
encoding is compared with what the reference gives for Go's ``getCertificate``.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading

import pytest
from atls_helpers import Pair
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from starlock.atls import AtlsError, ServerConfig
from starlock.atls._wire import public_key_hash, verify_peer_certificate

OPENSSL = shutil.which("openssl")


@pytest.fixture(autouse=True)
def _require_openssl() -> None:
    """The interop tests need the openssl CLI (scripts/setup.sh installs it): skip, or fail under CI."""
    if OPENSSL is None:
        message = "openssl CLI not installed (Debian package openssl)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def _serve_once(config: ServerConfig) -> tuple[int, threading.Thread, list[BaseException]]:
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def run() -> None:
        sock, _ = listener.accept()
        listener.close()
        try:
            conn = config.accept(sock)
            conn.recv(1)
            conn.close()
        except (AtlsError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, errors


def _s_client(port: int, server_name: str) -> str:
    assert OPENSSL is not None
    proc = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name, "-showcerts"],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.decode(errors="replace")


def test_openssl_s_client_gets_a_certificate_bound_to_its_nonce(pair: Pair) -> None:
    nonce = secrets.token_bytes(32)
    port, thread, _ = _serve_once(ServerConfig(pair.issuer))
    output = _s_client(port, base64.b64encode(nonce).decode())
    thread.join(30)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", output, re.S)
    assert pem is not None, output
    cert = x509.load_pem_x509_certificate(pem.group(0).encode())
    der = cert.public_bytes(serialization.Encoding.DER)

    peer = verify_peer_certificate(der, nonce, {pair.validator.variant.oid: pair.validator})
    assert peer is not None and peer.result.user_data == public_key_hash(cert)
    with pytest.raises(AtlsError):  # and for any other nonce it is stale
        verify_peer_certificate(der, secrets.token_bytes(32), {pair.validator.variant.oid: pair.validator})

    # The encoding of Go's getCertificate (reference §A1).
    assert cert.subject == cert.issuer and cert.subject.rfc4514_string() == "CN=Constellation"
    assert b"\x13\x0dConstellation" in der  # PrintableString, as Go writes it
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=4)
    assert 0 < cert.serial_number < 2**128
    (extension,) = list(cert.extensions)
    assert extension.oid.dotted_string == pair.validator.variant.oid and extension.critical is False
    assert "Protocol: TLSv1.3" in output or "TLSv1.3" in output


def test_openssl_s_client_sees_the_server_nonce_in_the_ca_list(dummy_pair: Pair) -> None:
    port, thread, errors = _serve_once(ServerConfig(validators=[dummy_pair.validator]))
    output = _s_client(port, base64.b64encode(secrets.token_bytes(32)).decode())
    thread.join(30)
    match = re.search(r"Acceptable client certificate CA names\n(.+)\n", output)
    assert match is not None, output
    names = match.group(1).strip()
    assert names.startswith("CN")
    server_nonce = base64.b64decode(names.split("=", 1)[1].strip())
    assert len(server_nonce) == 32
    assert errors and "client presented no certificate" in str(errors[0])
