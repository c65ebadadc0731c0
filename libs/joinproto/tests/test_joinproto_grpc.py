"""Method paths and descriptor names are exactly Constellation's (spec-services §1, table).

A real grpcio server with the generated servicers listens on a Unix socket; a client calls it
through a generic channel with the literal method path and raw bytes (no generated stub, no
serializer), so the path on the wire is proven, not just the stub's view of it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from starlock.joinproto import (
    components_pb2,
    init_pb2,
    init_pb2_grpc,
    join_pb2,
    join_pb2_grpc,
    keyservice_pb2,
    keyservice_pb2_grpc,
    recover_pb2,
    recover_pb2_grpc,
    verify_pb2,
    verify_pb2_grpc,
)


class Join(join_pb2_grpc.APIServicer):
    def IssueJoinTicket(self, request: join_pb2.IssueJoinTicketRequest, context: Any) -> Any:
        return join_pb2.IssueJoinTicketResponse(token="t." + request.disk_uuid)

    def IssueRejoinTicket(self, request: join_pb2.IssueRejoinTicketRequest, context: Any) -> Any:
        return join_pb2.IssueRejoinTicketResponse(state_disk_key=request.disk_uuid.encode())


class Init(init_pb2_grpc.APIServicer):
    def Init(self, request: init_pb2.InitRequest, context: Any) -> Iterator[init_pb2.InitResponse]:
        yield init_pb2.InitResponse(init_failure=init_pb2.InitFailureResponse(error=request.cluster_name))
        yield init_pb2.InitResponse(log=init_pb2.LogResponseType(log=b"a"))
        yield init_pb2.InitResponse(log=init_pb2.LogResponseType(log=b"b"))


class Kms(keyservice_pb2_grpc.APIServicer):
    def GetDataKey(self, request: keyservice_pb2.GetDataKeyRequest, context: Any) -> Any:
        return keyservice_pb2.GetDataKeyResponse(data_key=bytes(request.length))


class Verify(verify_pb2_grpc.APIServicer):
    def GetAttestation(self, request: verify_pb2.GetAttestationRequest, context: Any) -> Any:
        return verify_pb2.GetAttestationResponse(attestation=request.nonce[::-1])


class Recover(recover_pb2_grpc.APIServicer):
    def Recover(self, request: recover_pb2.RecoverMessage, context: Any) -> Any:
        return recover_pb2.RecoverResponse()


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    # A short private folder: Unix socket paths are limited to ~107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="sl-jp-"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    join_pb2_grpc.add_APIServicer_to_server(Join(), server)
    init_pb2_grpc.add_APIServicer_to_server(Init(), server)
    keyservice_pb2_grpc.add_APIServicer_to_server(Kms(), server)
    verify_pb2_grpc.add_APIServicer_to_server(Verify(), server)
    recover_pb2_grpc.add_APIServicer_to_server(Recover(), server)
    target = f"unix:{folder}/sock"
    server.add_insecure_port(target)
    server.start()
    chan = grpc.insecure_channel(target)
    try:
        yield chan
    finally:
        chan.close()
        server.stop(grace=None).wait()
        shutil.rmtree(folder)


def test_kms_get_data_key_path(channel: grpc.Channel) -> None:
    call = channel.unary_unary("/kms.API/GetDataKey")  # no serializers: raw bytes
    # GetDataKeyRequest{data_key_id="abc", length=4} -> GetDataKeyResponse{data_key=00000000}
    assert call(bytes.fromhex("0a036162631004"), timeout=10) == bytes.fromhex("0a0400000000")


def test_join_paths(channel: grpc.Channel) -> None:
    join = channel.unary_unary("/join.API/IssueJoinTicket")
    assert join(bytes.fromhex("0a0175"), timeout=10) == bytes.fromhex("3203") + b"t.u"  # token = field 6
    rejoin = channel.unary_unary("/join.API/IssueRejoinTicket")
    assert rejoin(bytes.fromhex("0a0175"), timeout=10) == bytes.fromhex("0a0175")


def test_verify_path(channel: grpc.Channel) -> None:
    call = channel.unary_unary("/verify.API/GetAttestation")
    assert call(bytes.fromhex("12020102"), timeout=10) == bytes.fromhex("0a020201")


def test_recover_path(channel: grpc.Channel) -> None:
    call = channel.unary_unary("/recoverproto.API/Recover")
    assert call(b"", timeout=10) == b""


def test_init_is_server_streaming(channel: grpc.Channel) -> None:
    call = channel.unary_stream("/init.API/Init")
    replies = list(call(bytes.fromhex("4a01") + b"c", timeout=10))  # cluster_name (field 9) = "c"
    assert replies == [
        bytes.fromhex("12030a01") + b"c",  # init_failure{error="c"}
        bytes.fromhex("1a030a01") + b"a",  # log{log="a"}
        bytes.fromhex("1a030a01") + b"b",
    ]


@pytest.mark.parametrize("path", ["/keyservice.API/GetDataKey", "/join.Api/IssueJoinTicket", "/API/GetDataKey"])
def test_other_paths_are_unimplemented(channel: grpc.Channel, path: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(path)(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_generated_stub_uses_the_same_path(channel: grpc.Channel) -> None:
    stub = keyservice_pb2_grpc.APIStub(channel)
    reply = stub.GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id="x", length=2), timeout=10)
    assert reply.data_key == b"\x00\x00"


# --- descriptor names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "service", "methods", "streaming"),
    [
        (join_pb2, "join.API", ["IssueJoinTicket", "IssueRejoinTicket"], set()),
        (init_pb2, "init.API", ["Init"], {"Init"}),
        (keyservice_pb2, "kms.API", ["GetDataKey"], set()),
        (verify_pb2, "verify.API", ["GetAttestation"], set()),
        (recover_pb2, "recoverproto.API", ["Recover"], set()),
    ],
)
def test_service_descriptors(module: Any, service: str, methods: list[str], streaming: set[str]) -> None:
    desc = module.DESCRIPTOR.services_by_name["API"]
    assert desc.full_name == service
    assert [m.name for m in desc.methods] == methods
    for method in desc.methods:
        assert method.client_streaming is False
        assert method.server_streaming is (method.name in streaming)


def test_message_full_names() -> None:
    assert components_pb2.Component.DESCRIPTOR.full_name == "components.Component"
    assert join_pb2.control_plane_cert_or_key.DESCRIPTOR.full_name == "join.control_plane_cert_or_key"
    field = join_pb2.IssueJoinTicketResponse.DESCRIPTOR.fields_by_name["kubernetes_components"]
    assert field.message_type.full_name == "components.Component"
    assert init_pb2.InitRequest.DESCRIPTOR.fields_by_number[7].message_type.full_name == "components.Component"
    assert keyservice_pb2.GetDataKeyRequest.DESCRIPTOR.full_name == "kms.GetDataKeyRequest"
    assert verify_pb2.GetAttestationRequest.DESCRIPTOR.full_name == "verify.GetAttestationRequest"
    kind = init_pb2.InitResponse.DESCRIPTOR.oneofs_by_name["kind"]
    assert [f.name for f in kind.fields] == ["init_success", "init_failure", "log"]
    assert {m.full_name for m in init_pb2.DESCRIPTOR.message_types_by_name.values()} == {
        "init.InitRequest",
        "init.InitResponse",
        "init.InitSuccessResponse",
        "init.InitFailureResponse",
        "init.LogResponseType",
        "init.KubernetesComponent",
    }


# --- reserved numbers -----------------------------------------------------------------------


def _reserved(message: Any) -> tuple[set[int], set[str]]:
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.DescriptorProto()
    message.DESCRIPTOR.CopyToProto(proto)
    numbers = {n for r in proto.reserved_range for n in range(r.start, r.end)}
    return numbers, set(proto.reserved_name)


def test_init_request_has_no_field_4() -> None:
    desc = init_pb2.InitRequest.DESCRIPTOR
    assert 4 not in desc.fields_by_number
    assert sorted(desc.fields_by_number) == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert _reserved(init_pb2.InitRequest) == ({4}, {"cloud_service_account_uri"})


def test_get_attestation_request_has_no_field_1() -> None:
    desc = verify_pb2.GetAttestationRequest.DESCRIPTOR
    assert 1 not in desc.fields_by_number
    assert sorted(desc.fields_by_number) == [2]
    assert _reserved(verify_pb2.GetAttestationRequest)[0] == {1}
