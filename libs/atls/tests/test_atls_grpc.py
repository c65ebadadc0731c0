"""gRPC end to end: real grpcio servicers behind the aTLS front end, called through the client bridge."""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from atls_helpers import Pair

from starlock.atls import ClientConfig, IssuerUnavailable, ServerConfig
from starlock.atls.rpc import AttestedServer, attested_channel, attested_peer
from starlock.attestation.tpm_device import TpmSupportMissing
from starlock.attestation.variant import Variant
from starlock.joinproto import init_pb2, init_pb2_grpc, keyservice_pb2, keyservice_pb2_grpc


class KeyService(keyservice_pb2_grpc.APIServicer):
    def __init__(self) -> None:
        self.peers: list[Any] = []
        self.cancelled = threading.Event()

    def GetDataKey(self, request: Any, context: grpc.ServicerContext) -> Any:
        peer = attested_peer(context)
        self.peers.append(peer)
        if request.data_key_id == "slow":
            context.add_callback(self.cancelled.set)
            time.sleep(2)
        variant = "none" if peer.attestation is None else peer.attestation.variant.value
        return keyservice_pb2.GetDataKeyResponse(data_key=f"{request.data_key_id}:{variant}".encode())


class InitService(init_pb2_grpc.APIServicer):
    def Init(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for i in range(request.kubernetes_version.count("x")):
            yield init_pb2.InitResponse(log=init_pb2.LogResponseType(log=f"chunk {i}".encode()))
        yield init_pb2.InitResponse(init_success=init_pb2.InitSuccessResponse(cluster_id=b"\x01" * 32))


def _start(config: ServerConfig) -> tuple[AttestedServer, KeyService]:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    keys = KeyService()
    keyservice_pb2_grpc.add_APIServicer_to_server(keys, server)
    init_pb2_grpc.add_APIServicer_to_server(InitService(), server)
    return AttestedServer(server, config, "127.0.0.1:0").start(), keys


@pytest.fixture
def client_attesting_server(dummy_pair: Pair) -> Iterator[tuple[AttestedServer, KeyService]]:
    front, keys = _start(ServerConfig(dummy_pair.issuer, [dummy_pair.validator]))
    yield front, keys
    front.stop()


def _listening_tcp_ports() -> set[int]:
    """Ports of the TCP sockets in LISTEN state that this process holds (from /proc, by inode)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_unary_and_streaming_with_mutual_attestation(
    client_attesting_server: tuple[AttestedServer, KeyService], dummy_pair: Pair
) -> None:
    front, keys = client_attesting_server
    config = ClientConfig(dummy_pair.issuer, [dummy_pair.validator])
    with attested_channel(f"127.0.0.1:{front.port}", config) as channel:
        reply = keyservice_pb2_grpc.APIStub(channel).GetDataKey(
            keyservice_pb2.GetDataKeyRequest(data_key_id="disk", length=32), timeout=10
        )
        assert reply.data_key == b"disk:dummy"  # the handler saw the client's attested identity
        responses = list(
            init_pb2_grpc.APIStub(channel).Init(init_pb2.InitRequest(kubernetes_version="xxx"), timeout=10)
        )
    assert [r.WhichOneof("kind") for r in responses] == ["log", "log", "log", "init_success"]
    (peer,) = keys.peers
    assert peer.remote_endpoint.startswith("127.0.0.1:")
    assert peer.attestation.result.user_data == peer.attestation.public_key_hash


def test_private_socket_and_no_plaintext_tcp_port(client_attesting_server: tuple[AttestedServer, KeyService]) -> None:
    front, _ = client_attesting_server
    assert stat.S_IMODE(os.stat(front.directory).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(front.socket_path).st_mode)
    assert _listening_tcp_ports() == {front.port}


def test_failed_attestation_never_reaches_grpc(
    client_attesting_server: tuple[AttestedServer, KeyService], caplog: pytest.LogCaptureFixture
) -> None:
    front, keys = client_attesting_server
    caplog.set_level(logging.INFO, logger="starlock.atls")
    channel = attested_channel(f"127.0.0.1:{front.port}", ClientConfig())  # the client does not attest
    with channel, pytest.raises(grpc.RpcError) as excinfo:
        keyservice_pb2_grpc.APIStub(channel).GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id="x"), timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
    assert keys.peers == []
    assert any("rejected connection" in r.message and "got extension OIDs []" in r.message for r in caplog.records)


def test_client_refuses_unattested_server(dummy_pair: Pair) -> None:
    front, keys = _start(ServerConfig())  # the server does not attest
    try:
        with attested_channel(f"127.0.0.1:{front.port}", ClientConfig(validators=[dummy_pair.validator])) as channel:
            with pytest.raises(grpc.RpcError) as excinfo:
                keyservice_pb2_grpc.APIStub(channel).GetDataKey(keyservice_pb2.GetDataKeyRequest(), timeout=5)
            assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "compatible attestation documents" in str(channel.last_error)
    finally:
        front.stop()
    assert keys.peers == []


def test_qemu_vtpm_server_attestation(qemu_pair: Pair) -> None:
    front, _ = _start(ServerConfig(qemu_pair.issuer))
    try:
        with attested_channel(f"127.0.0.1:{front.port}", ClientConfig(validators=[qemu_pair.validator])) as channel:
            reply = keyservice_pb2_grpc.APIStub(channel).GetDataKey(
                keyservice_pb2.GetDataKeyRequest(data_key_id="k"), timeout=10
            )
        assert reply.data_key == b"k:none"
    finally:
        front.stop()


def test_deadline_and_cancellation_pass_through(
    client_attesting_server: tuple[AttestedServer, KeyService], dummy_pair: Pair
) -> None:
    front, keys = client_attesting_server
    config = ClientConfig(dummy_pair.issuer, [dummy_pair.validator])
    with attested_channel(f"127.0.0.1:{front.port}", config) as channel:
        stub = keyservice_pb2_grpc.APIStub(channel)
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id="slow"), timeout=0.5)
        assert excinfo.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert keys.cancelled.wait(5)  # the server saw the deadline expire
        keys.cancelled.clear()
        future = stub.GetDataKey.future(keyservice_pb2.GetDataKeyRequest(data_key_id="slow"), timeout=10)
        time.sleep(0.3)
        future.cancel()
        assert keys.cancelled.wait(5)  # the client's cancellation reached the handler


def test_direct_unix_connection_has_no_identity(client_attesting_server: tuple[AttestedServer, KeyService]) -> None:
    """A connection that did not come through the front end gets no identity (only we can make one)."""
    front, _ = client_attesting_server
    with grpc.insecure_channel(f"unix:{front.socket_path}") as channel, pytest.raises(grpc.RpcError) as excinfo:
        keyservice_pb2_grpc.APIStub(channel).GetDataKey(keyservice_pb2.GetDataKeyRequest(), timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.UNKNOWN


def test_bridge_socket_is_private(dummy_pair: Pair) -> None:
    channel = attested_channel("127.0.0.1:9", ClientConfig(validators=[dummy_pair.validator]))
    try:
        assert stat.S_IMODE(os.stat(channel.directory).st_mode) == 0o700
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(channel.socket_path)
        probe.close()
    finally:
        channel.close()
    assert not os.path.exists(channel.directory)


class _BrokenIssuer:
    variant = Variant.QEMU_VTPM

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        raise TpmSupportMissing("TPM support needs tpm2-pytss and libtss2")


def test_attested_server_refuses_to_start_with_an_issuer_that_cannot_attest() -> None:
    listening = _listening_tcp_ports()
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    front = AttestedServer(server, ServerConfig(_BrokenIssuer()), "127.0.0.1:0")
    with pytest.raises(IssuerUnavailable, match="qemu-vtpm issuer cannot attest: TpmSupportMissing"):
        front.start()
    assert not os.path.exists(front.directory)
    assert _listening_tcp_ports() == listening  # its listener was closed
