"""The four aTLS modes with the dummy pair and with qemu-vtpm quotes from a live swtpm.

Each mode proves both bindings of every attested side: the validator was called with the nonce
the *other* side sent (the SNI for the server's document, the CA list's CN for the client's), and
the document's user data is SHA-256 of the SubjectPublicKeyInfo of the key that did the handshake.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from atls_helpers import Pair, handshake
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from starlock.atls import ClientConfig, ServerConfig
from starlock.atls._handshake import AtlsConnection
from starlock.attestation.interfaces import ValidationResult, Validator
from starlock.attestation.variant import Variant


class Recording:
    """Wraps a validator and records the nonce of each call."""

    def __init__(self, inner: Validator) -> None:
        self.inner = inner
        self.nonces: list[bytes] = []

    @property
    def variant(self) -> Variant:
        return self.inner.variant

    def validate(self, document: bytes, nonce: bytes) -> ValidationResult:
        self.nonces.append(nonce)
        return self.inner.validate(document, nonce)


def _spki_hash(conn: SSL.Connection, *, peer: bool) -> bytes:
    cert = conn.get_peer_certificate(as_cryptography=True) if peer else conn.get_certificate(as_cryptography=True)
    assert cert is not None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _check_server_attested(client: AtlsConnection, server: AtlsConnection, recorder: Recording) -> None:
    assert client.peer is not None and client.peer.variant is recorder.variant
    sni = server.ssl.get_servername()
    assert sni is not None and len(sni) == 44  # base64 of a 32-byte nonce
    assert recorder.nonces == [base64.b64decode(sni)]  # nonce binding: the client's nonce from SNI
    assert client.peer.result.user_data == _spki_hash(client.ssl, peer=True) == _spki_hash(server.ssl, peer=False)


def _check_client_attested(client: AtlsConnection, server: AtlsConnection, recorder: Recording) -> None:
    assert server.peer is not None and server.peer.variant is recorder.variant
    names = client.ssl.get_client_ca_list(as_cryptography=True)
    assert len(names) == 1
    server_nonce = base64.b64decode(names[0].rfc4514_string().removeprefix("CN="))
    assert len(server_nonce) == 32
    assert recorder.nonces == [server_nonce]  # nonce binding: the server's nonce from the CA list
    assert server.peer.result.user_data == _spki_hash(server.ssl, peer=True) == _spki_hash(client.ssl, peer=False)


@pytest.mark.parametrize("mode", ["server-attests", "client-attests", "both", "neither"])
def test_mode(pair: Pair, mode: str) -> None:
    server_attests = mode in ("server-attests", "both")
    client_attests = mode in ("client-attests", "both")
    to_check_server, to_check_client = Recording(pair.validator), Recording(pair.validator)
    server = ServerConfig(pair.issuer if server_attests else None, [to_check_client] if client_attests else [])
    client = ClientConfig(pair.issuer if client_attests else None, [to_check_server] if server_attests else [])
    outcome = handshake(server, client)
    assert outcome.server_error is None and outcome.client_error is None, (outcome.server_error, outcome.client_error)
    assert outcome.client is not None and outcome.server is not None
    assert outcome.client.tls_version == "TLSv1.3"
    assert outcome.client.alpn_protocol == b"http/1.1"  # Go's rule: the server's first choice the client offers
    if server_attests:
        _check_server_attested(outcome.client, outcome.server, to_check_server)
    else:
        assert outcome.client.peer is None and to_check_server.nonces == []
    if client_attests:
        _check_client_attested(outcome.client, outcome.server, to_check_client)
    else:
        assert outcome.server.peer is None
        assert outcome.client.ssl.get_certificate() is None  # no client certificate was requested


def test_fresh_nonce_and_client_key_per_connection(dummy_pair: Pair) -> None:
    """Upstream reuses a config's nonce; Starlock draws one per connection (and a key per client cert)."""
    recorder = Recording(dummy_pair.validator)
    server = ServerConfig(dummy_pair.issuer, [dummy_pair.validator])
    client = ClientConfig(dummy_pair.issuer, [recorder])
    first, second = handshake(server, client), handshake(server, client)
    assert first.client is not None and second.client is not None
    assert len(set(recorder.nonces)) == 2
    assert _spki_hash(first.client.ssl, peer=False) != _spki_hash(second.client.ssl, peer=False)


def test_several_validators_pick_by_oid(dummy_pair: Pair, qemu_pair: Pair) -> None:
    client = ClientConfig(validators=[qemu_pair.validator, dummy_pair.validator])
    for issuer, variant in ((dummy_pair.issuer, Variant.DUMMY), (qemu_pair.issuer, Variant.QEMU_VTPM)):
        outcome = handshake(ServerConfig(issuer), client)
        assert outcome.client is not None and outcome.client.peer is not None
        assert outcome.client.peer.variant is variant


def test_tls12_is_accepted(dummy_pair: Pair) -> None:
    """Go's MinVersion is TLS 1.2: a TLS 1.2-only client still gets an attested certificate."""
    client = ClientConfig(dummy_pair.issuer, [dummy_pair.validator])
    client._ctx = _tls12_only(client)  # a test-only cap on the client's version
    outcome = handshake(ServerConfig(dummy_pair.issuer, [dummy_pair.validator]), client)
    assert outcome.client_error is None and outcome.client is not None
    assert outcome.client.tls_version == "TLSv1.2"
    assert outcome.server is not None and outcome.server.peer is not None  # CA-list nonce works in 1.2 too


def _tls12_only(client: ClientConfig) -> SSL.Context:
    from starlock.atls import _bindings
    from starlock.atls._handshake import ALPN_PROTOCOLS, _base_context, _verify_callback

    ctx = _base_context()
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
    ctx.set_alpn_protos(list(ALPN_PROTOCOLS))
    _bindings.install_cert_callback(ctx)
    return ctx


def test_server_contexts_are_reused_one_handshake_at_a_time(dummy_pair: Pair) -> None:
    """Client attestation: the per-connection nonce lives in a pooled context's CA list. Concurrent
    handshakes each hold their own context (a swapped CA list would bind a client's document to
    another connection's nonce, and the dummy validator would refuse it); finished ones return it."""
    import concurrent.futures

    server = ServerConfig(validators=[dummy_pair.validator])
    client = ClientConfig(issuer=dummy_pair.issuer)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: handshake(server, client), range(32)))
    for outcome in outcomes:
        assert outcome.server_error is None and outcome.client_error is None
        assert outcome.server is not None and outcome.server.peer is not None
    idle = list(server._idle)
    assert 1 <= len(idle) <= 8 and len({id(ctx) for ctx in idle}) == len(idle)
    outcome = handshake(server, client)  # the next handshake takes an idle context instead of building one
    assert outcome.server is not None and server._idle[-1] in idle
