"""Binary wire format pinned by hand-computed encodings (spec-services §1.1-1.5).

Expected bytes are written out by hand from the protobuf encoding rules, never produced by
protobuf: a field key is one varint ``field_number << 3 | wire_type`` (wire type 0 = varint,
2 = length-delimited), followed by a varint value or by a varint length and the payload. All
fields here have numbers below 16 and payloads shorter than 128 bytes, so keys and lengths are
single bytes. Every case is checked in both directions (serialize and parse).
"""

from __future__ import annotations

from google.protobuf.message import Message

from starlock.joinproto import components_pb2, init_pb2, join_pb2, keyservice_pb2, verify_pb2

VARINT = 0
LEN = 2


def key(field: int, wire_type: int) -> bytes:
    assert field < 16
    return bytes([field << 3 | wire_type])


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, embedded message)."""
    assert len(payload) < 128
    return key(field, LEN) + bytes([len(payload)]) + payload


def small_varint(field: int, value: int) -> bytes:
    assert 0 <= value < 128
    return key(field, VARINT) + bytes([value])


def check_both_ways(msg: Message, expected: bytes) -> None:
    assert msg.SerializeToString() == expected
    assert type(msg).FromString(expected) == msg


# --- hand-written literals for the tag arithmetic itself ------------------------------------


def test_key_helper_matches_literal_tags() -> None:
    assert key(1, LEN) == b"\x0a"
    assert key(2, VARINT) == b"\x10"
    assert key(5, LEN) == b"\x2a"
    assert key(12, LEN) == b"\x62"


def test_get_data_key_request() -> None:
    # 0a 03 'abc' (field 1, string) | 10 20 (field 2, varint 32)
    msg = keyservice_pb2.GetDataKeyRequest(data_key_id="abc", length=32)
    check_both_ways(msg, bytes.fromhex("0a036162631020"))


def test_get_data_key_response() -> None:
    msg = keyservice_pb2.GetDataKeyResponse(data_key=b"\x00\xff")
    check_both_ways(msg, bytes.fromhex("0a0200ff"))


def test_get_attestation_request_nonce_is_field_2() -> None:
    # 12 02 90 09: field 2, length-delimited, two bytes
    msg = verify_pb2.GetAttestationRequest(nonce=b"\x90\x09")
    check_both_ways(msg, bytes.fromhex("12029009"))


def test_get_attestation_response() -> None:
    check_both_ways(verify_pb2.GetAttestationResponse(attestation=b"{}"), bytes.fromhex("0a027b7d"))


def test_get_attestation_request_ignores_removed_field_1() -> None:
    # A peer still sending user_data (field 1) must not have it read as anything else.
    data = bytes.fromhex("0a01ff1201aa")
    msg = verify_pb2.GetAttestationRequest.FromString(data)
    assert msg.nonce == b"\xaa"
    assert msg.ListFields() == [(verify_pb2.GetAttestationRequest.DESCRIPTOR.fields_by_name["nonce"], b"\xaa")]


# --- join -----------------------------------------------------------------------------------


def test_issue_join_ticket_request() -> None:
    msg = join_pb2.IssueJoinTicketRequest(
        disk_uuid="u1",
        certificate_request=b"\x30\x00",
        is_control_plane=True,
        host_public_key=b"k",
        host_certificate_principals=["10.0.0.1", "node"],
    )
    expected = (
        bytes.fromhex("0a027531")  # 1 disk_uuid "u1"
        + bytes.fromhex("12023000")  # 2 certificate_request
        + bytes.fromhex("1801")  # 3 is_control_plane true
        + bytes.fromhex("22016b")  # 4 host_public_key "k"
        + bytes.fromhex("2a08") + b"10.0.0.1"  # 5 principal
        + bytes.fromhex("2a04") + b"node"  # 5 principal (repeated)
    )  # fmt: skip
    assert expected == (
        ld(1, b"u1") + ld(2, b"\x30\x00") + small_varint(3, 1) + ld(4, b"k") + ld(5, b"10.0.0.1") + ld(5, b"node")
    )
    check_both_ways(msg, expected)


def test_issue_join_ticket_response_nested() -> None:
    msg = join_pb2.IssueJoinTicketResponse(
        state_disk_key=b"\x11" * 32,
        measurement_salt=b"\x22" * 32,
        measurement_secret=b"\x33" * 32,
        kubelet_cert=b"PEM",
        api_server_endpoint="10.0.0.1:6443",
        token="abcdef.0123456789abcdef",
        discovery_token_ca_cert_hash="sha256:ab",
        control_plane_files=[join_pb2.control_plane_cert_or_key(name="etcd/ca.key", data=b"K")],
        kubernetes_components=[
            components_pb2.Component(url="data:x", hash="sha256:ab", install_path="/p", extract=True)
        ],
        authorized_ca_public_key=b"ssh-ed25519 A\n",
        host_certificate=b"cert\n",
    )
    # control_plane_cert_or_key: 0a 0b 'etcd/ca.key' 12 01 'K' -> 16 bytes
    cp_file = bytes.fromhex("0a0b") + b"etcd/ca.key" + bytes.fromhex("1201") + b"K"
    assert len(cp_file) == 0x10
    # Component: 0a 06 'data:x' 12 09 'sha256:ab' 1a 02 '/p' 20 01 -> 25 bytes
    component = (
        bytes.fromhex("0a06") + b"data:x" + bytes.fromhex("1209") + b"sha256:ab" + bytes.fromhex("1a02") + b"/p"
    ) + bytes.fromhex("2001")
    assert len(component) == 0x19
    expected = (
        bytes.fromhex("0a20") + b"\x11" * 32
        + bytes.fromhex("1220") + b"\x22" * 32
        + bytes.fromhex("1a20") + b"\x33" * 32
        + bytes.fromhex("2203") + b"PEM"
        + bytes.fromhex("2a0d") + b"10.0.0.1:6443"
        + bytes.fromhex("3217") + b"abcdef.0123456789abcdef"
        + bytes.fromhex("3a09") + b"sha256:ab"
        + bytes.fromhex("4210") + cp_file  # field 8: (8 << 3 | 2) = 0x42
        + bytes.fromhex("5219") + component  # field 10: (10 << 3 | 2) = 0x52
        + bytes.fromhex("5a0e") + b"ssh-ed25519 A\n"  # field 11: 0x5a
        + bytes.fromhex("6205") + b"cert\n"  # field 12: 0x62
    )  # fmt: skip
    check_both_ways(msg, expected)
    parsed = join_pb2.IssueJoinTicketResponse.FromString(expected)
    assert parsed.control_plane_files[0].name == "etcd/ca.key"
    assert parsed.kubernetes_components[0].extract is True
    assert parsed.kubernetes_version == ""  # field 9, legacy, absent


def test_issue_join_ticket_response_legacy_kubernetes_version_is_field_9() -> None:
    check_both_ways(join_pb2.IssueJoinTicketResponse(kubernetes_version="v1"), bytes.fromhex("4a027631"))


def test_rejoin_ticket() -> None:
    check_both_ways(join_pb2.IssueRejoinTicketRequest(disk_uuid="u"), bytes.fromhex("0a0175"))
    check_both_ways(
        join_pb2.IssueRejoinTicketResponse(state_disk_key=b"\x01", measurement_secret=b"\x02"),
        bytes.fromhex("0a0101120102"),
    )


# --- init -----------------------------------------------------------------------------------


def test_init_request() -> None:
    msg = init_pb2.InitRequest(
        kms_uri="kms://k",
        storage_uri="storage://no-store",
        measurement_salt=b"\x01\x02\x03",
        kubernetes_version="v1.30.1",
        conformance_mode=True,
        kubernetes_components=[components_pb2.Component(url="u")],
        init_secret=b"secret",
        cluster_name="c",
        apiserver_cert_sans=["1.2.3.4", "lb"],
        service_cidr="10.96.0.0/12",
    )
    expected = (
        bytes.fromhex("0a07") + b"kms://k"  # 1
        + bytes.fromhex("1212") + b"storage://no-store"  # 2 (18 bytes)
        + bytes.fromhex("1a03010203")  # 3
        # no field 4: reserved
        + bytes.fromhex("2a07") + b"v1.30.1"  # 5
        + bytes.fromhex("3001")  # 6 conformance_mode, varint
        + bytes.fromhex("3a03" "0a0175")  # 7 Component{url="u"}
        + bytes.fromhex("4206") + b"secret"  # 8
        + bytes.fromhex("4a01") + b"c"  # 9
        + bytes.fromhex("5207") + b"1.2.3.4"  # 10
        + bytes.fromhex("5202") + b"lb"  # 10 (repeated)
        + bytes.fromhex("5a0c") + b"10.96.0.0/12"  # 11
    )  # fmt: skip
    check_both_ways(msg, expected)


def test_init_response_success_branch() -> None:
    inner = bytes.fromhex("0a02") + b"kc" + bytes.fromhex("1a02abcd")  # kubeconfig=1, cluster_id=3
    msg = init_pb2.InitResponse(init_success=init_pb2.InitSuccessResponse(kubeconfig=b"kc", cluster_id=b"\xab\xcd"))
    check_both_ways(msg, bytes.fromhex("0a08") + inner)
    assert init_pb2.InitResponse.FromString(bytes.fromhex("0a08") + inner).WhichOneof("kind") == "init_success"


def test_init_response_failure_branch() -> None:
    msg = init_pb2.InitResponse(init_failure=init_pb2.InitFailureResponse(error="boom"))
    data = bytes.fromhex("12060a04") + b"boom"
    check_both_ways(msg, data)
    assert init_pb2.InitResponse.FromString(data).WhichOneof("kind") == "init_failure"


def test_init_response_log_branch() -> None:
    msg = init_pb2.InitResponse(log=init_pb2.LogResponseType(log=b"line\n"))
    data = bytes.fromhex("1a070a05") + b"line\n"
    check_both_ways(msg, data)
    assert init_pb2.InitResponse.FromString(data).WhichOneof("kind") == "log"


def test_init_response_empty_member_is_still_present() -> None:
    # A set oneof member is written even when empty: key + zero length.
    msg = init_pb2.InitResponse(init_success=init_pb2.InitSuccessResponse())
    check_both_ways(msg, bytes.fromhex("0a00"))
    assert init_pb2.InitResponse.FromString(b"").WhichOneof("kind") is None


def test_init_request_unknown_field_4_is_not_read() -> None:
    # The pre-v2.10 numbering put storage_uri at 4; it must not land in any current field.
    msg = init_pb2.InitRequest.FromString(bytes.fromhex("2201") + b"x")
    assert msg.ListFields() == []


def test_kubernetes_component_same_wire_shape_as_component() -> None:
    fields = {"url": "https://x/kubeadm", "hash": "sha256:00", "install_path": "/bin/kubeadm", "extract": True}
    expected = ld(1, b"https://x/kubeadm") + ld(2, b"sha256:00") + ld(3, b"/bin/kubeadm") + small_varint(4, 1)
    check_both_ways(components_pb2.Component(**fields), expected)
    check_both_ways(init_pb2.KubernetesComponent(**fields), expected)
