"""Validation warnings are logged per connection and reach the caller.

Security review: a ``warnOnly`` measurement mismatch and "AK trusted without a hardware root"
vanished without a log line, even at -v 6. Upstream's validators log each one; here every
accepted peer's warnings are logged at WARNING per connection and exposed on the connection
(``AtlsConnection.warnings``, ``PeerAttestation.warnings``), the gRPC channel and the tunnel
(``last_attestation``).
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from atls_helpers import Pair, handshake

from starlock.atls import ClientConfig, ServerConfig
from starlock.atls.rpc import AttestedServer, attested_channel
from starlock.atls.tunnel import start_tunnel_client, start_tunnel_server
from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc


def _warn_only(pair: Pair) -> Any:
    measurements = dict(pair.measurements)
    measurements["4"] = {"expected": "ab" * 32, "warnOnly": True}  # mismatches, but only warns
    return pair.validator_with(measurements)


def _warning_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "accepted with a warning" in r.getMessage()
    ]


def test_client_logs_and_exposes_the_servers_warnings(qemu_pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.atls")
    outcome = handshake(ServerConfig(qemu_pair.issuer), ClientConfig(validators=[_warn_only(qemu_pair)]))
    assert outcome.client is not None, outcome.client_error
    warnings = outcome.client.warnings
    assert warnings == outcome.client.peer.warnings == outcome.client.peer.result.warnings  # type: ignore[union-attr]
    assert any("untrusted measurement value" in w and "at index 4" in w for w in warnings)
    assert any("AK trusted without a hardware root" in w for w in warnings)
    lines = _warning_lines(caplog)
    assert len(lines) == len(warnings)  # one line per warning, for this one connection
    assert all(line.startswith("aTLS client: qemu-vtpm attestation of ") for line in lines)
    assert any("at index 4" in line for line in lines) and any("hardware root" in line for line in lines)


def test_server_logs_and_exposes_the_clients_warnings(qemu_pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.atls")
    outcome = handshake(ServerConfig(validators=[_warn_only(qemu_pair)]), ClientConfig(qemu_pair.issuer))
    assert outcome.server is not None, outcome.server_error
    assert any("at index 4" in w for w in outcome.server.warnings)
    lines = _warning_lines(caplog)
    assert lines and all(line.startswith("aTLS server: qemu-vtpm attestation of ") for line in lines)


def test_each_connection_logs_its_warnings(dummy_pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.atls")
    for _ in range(3):
        outcome = handshake(ServerConfig(dummy_pair.issuer), ClientConfig(validators=[dummy_pair.validator]))
        assert outcome.client is not None
        assert outcome.client.warnings == ("dummy attestation: the document is unsigned and proves nothing",)
    assert len(_warning_lines(caplog)) == 3


def test_no_warnings_no_lines(qemu_pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    class _Quiet:
        variant = qemu_pair.validator.variant

        def validate(self, document: bytes, nonce: bytes) -> Any:
            import attrs

            return attrs.evolve(qemu_pair.validator.validate(document, nonce), warnings=())

    caplog.set_level(logging.DEBUG, logger="starlock.atls")
    outcome = handshake(ServerConfig(qemu_pair.issuer), ClientConfig(validators=[_Quiet()]))
    assert outcome.client is not None and outcome.client.warnings == ()
    assert _warning_lines(caplog) == []


class _KeyService(keyservice_pb2_grpc.APIServicer):
    def GetDataKey(self, request: Any, context: grpc.ServicerContext) -> Any:
        return keyservice_pb2.GetDataKeyResponse(data_key=b"k")


def test_grpc_channel_exposes_the_servers_warnings(qemu_pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.atls")
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    keyservice_pb2_grpc.add_APIServicer_to_server(_KeyService(), server)
    front = AttestedServer(server, ServerConfig(qemu_pair.issuer), "127.0.0.1:0").start()
    try:
        config = ClientConfig(validators=[_warn_only(qemu_pair)])
        with attested_channel(f"127.0.0.1:{front.port}", config) as channel:
            assert channel.last_attestation is None
            keyservice_pb2_grpc.APIStub(channel).GetDataKey(keyservice_pb2.GetDataKeyRequest(), timeout=10)
            assert channel.last_attestation is not None
            assert any("at index 4" in w for w in channel.last_attestation.warnings)
    finally:
        front.stop()
    assert any("at index 4" in line for line in _warning_lines(caplog))


def test_tunnel_client_exposes_the_servers_warnings(dummy_pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="starlock.atls")
    backend = socket.create_server(("127.0.0.1", 0))
    server = start_tunnel_server(
        "127.0.0.1:0", f"127.0.0.1:{backend.getsockname()[1]}", ServerConfig(dummy_pair.issuer)
    )
    client = start_tunnel_client(
        "127.0.0.1:0", f"127.0.0.1:{server.port}", ClientConfig(validators=[dummy_pair.validator])
    )
    try:
        with socket.create_connection(("127.0.0.1", client.port), timeout=10) as local:
            accepted, _ = backend.accept()  # the tunnel reached the backend: the handshake is done
            accepted.close()
            local.recv(1)
        assert client.last_attestation is not None
        assert client.last_attestation.warnings == ("dummy attestation: the document is unsigned and proves nothing",)
        assert _warning_lines(caplog)
    finally:
        client.stop()
        server.stop()
        backend.close()
