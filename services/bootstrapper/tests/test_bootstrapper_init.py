"""Init on a fresh swtpm node through a real aTLS client that checks the node (spec §5.2)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import grpc
import pytest
from conftest import InitNode
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from kubernetes import client, config

from starlock.bootstrapper.localdriver import COMPONENTS_ANNOTATION, components_config_map_name
from starlock.bootstrapper.nodestate import Role, read_node_state
from starlock.kms import ClusterKMS
from starlock.kms.derive import derive_cluster_id
from starlock.kubecluster import ControlPlane


def test_init_on_a_fresh_node(init_node: Callable[..., InitNode], kube_control_plane: ControlPlane) -> None:
    made = init_node()
    assert made.node.pcr15() == bytes(32)
    request = made.request()
    responses = made.init(request)
    assert len(responses) == 1 and responses[0].WhichOneof("kind") == "init_success"
    success = responses[0].init_success

    kms = ClusterKMS(made.master.key, made.master.salt)
    cluster_id = derive_cluster_id(kms.get_dek("key-measurementSecret", 32), request.measurement_salt)
    assert success.cluster_id == cluster_id
    assert success.owner_id == b""
    assert success.kubeconfig == kube_control_plane.admin_kubeconfig.read_bytes()
    # PCR 15 marked exactly once with the cluster ID (SHA-256 bank)
    assert made.node.pcr15() == hashlib.sha256(bytes(32) + hashlib.sha256(cluster_id).digest()).digest()

    # the state disk now opens with the KMS key for its UUID, and holds node_state.json
    disk_key = kms.get_dek("key-" + made.disk.uuid(), 32)
    made.disk.unlock(disk_key)
    assert made.disk.is_initialized()
    state = read_node_state(made.disk.mount_point() / "constellation" / "node_state.json")
    assert state.role is Role.CONTROL_PLANE and state.measurement_salt == request.measurement_salt

    # the SSH CA is the Ed25519 key of the ca_emergency_ssh seed
    ca = ed25519.Ed25519PrivateKey.from_private_bytes(kms.get_dek("key-ca_emergency_ssh", 32))
    expected = ca.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert (made.ssh_dir / "ssh_ca.pub").read_bytes() == expected + b"\n"

    # the driver created the components ConfigMap, annotated the node and created internal-config
    admin = config.new_client_from_config(config_file=str(kube_control_plane.admin_kubeconfig))
    core = client.CoreV1Api(admin)
    name = components_config_map_name(list(request.kubernetes_components))
    cm = core.read_namespaced_config_map(name, "kube-system")
    assert cm.immutable and cm.data["cluster-version"] == "v1.37.2"
    node = core.read_node("starlock-cp-0")
    assert node.metadata.annotations[COMPONENTS_ANNOTATION] == name
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    core.read_namespaced_config_map("internal-config", "kube-system")

    # the winner cleaned up: the init server stops accepting
    assert made.cleaner.wait(10)
    assert made.server.stopped.is_set()
    assert made.server.fatal_error is None


def test_wrong_init_secret_changes_nothing(init_node: Callable[..., InitNode]) -> None:
    made = init_node(logs=b"L" * 2500)
    with pytest.raises(grpc.RpcError) as caught:
        list(made.init(made.request(init_secret=b"wrong")))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert made.node.pcr15() == bytes(32)
    assert not made.disk.is_initialized()
    assert not made.server.stopped.is_set()


def test_failure_stream_is_failure_then_log_chunks(init_node: Callable[..., InitNode]) -> None:
    """The CLI reads init_failure first, then the node's log in 1024-byte chunks, then the error."""
    made = init_node(logs=b"x" * 2500)
    from starlock.atls import ClientConfig
    from starlock.atls.rpc import attested_channel
    from starlock.joinproto import init_pb2_grpc

    received = []
    with attested_channel(f"127.0.0.1:{made.front.port}", ClientConfig(validators=[made.node.validator()])) as channel:
        stream = init_pb2_grpc.APIStub(channel).Init(made.request(init_secret=b"wrong"), timeout=60)
        with pytest.raises(grpc.RpcError):
            for message in stream:
                received.append(message)
    kinds = [m.WhichOneof("kind") for m in received]
    assert kinds == ["init_failure", "log", "log", "log"]
    assert received[0].init_failure.error == "invalid init secret"
    assert [len(m.log.log) for m in received[1:]] == [1024, 1024, 452]


def test_second_init_is_refused(init_node: Callable[..., InitNode]) -> None:
    made = init_node()
    made.init(made.request())
    # the winner's cleaner stopped its init server: a new Init is refused outright
    with pytest.raises(grpc.RpcError) as caught:
        made.init(made.request(), enforce_pcr15=False)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # another bootstrapper process on the same node (same lock file) is refused by the node lock;
    # a client enforcing PCR 15 = 0 would not even reach it: the node is marked
    again = init_node()
    with pytest.raises(grpc.RpcError) as caught:
        again.init(again.request(), enforce_pcr15=False)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already being activated" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as refused:
        again.init(again.request())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the aTLS client refused PCR 15


def test_bad_kms_uri_and_salt_are_invalid_argument(init_node: Callable[..., InitNode]) -> None:
    made = init_node()
    for overrides in ({"kms_uri": "kms://nonsense"}, {"measurement_salt": b"short"}):
        with pytest.raises(grpc.RpcError) as caught:
            made.init(made.request(**overrides))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert made.node.pcr15() == bytes(32)


def test_init_and_join_race_one_winner(init_node: Callable[..., InitNode]) -> None:
    """The node lock decides: two Init calls at once, exactly one wins and PCR 15 is extended once."""
    made = init_node()
    results: list[object] = []

    def attempt() -> None:
        try:
            results.append(made.init(made.request(), enforce_pcr15=False))
        except grpc.RpcError as exc:
            results.append(exc.code())

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    wins = [r for r in results if isinstance(r, list)]
    assert len(wins) == 1
    loser = next(r for r in results if not isinstance(r, list))
    assert loser in (
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE,
    )  # lost the lock, or came after the stop
    cluster_id = wins[0][0].init_success.cluster_id  # type: ignore[index]
    assert made.node.pcr15() == hashlib.sha256(bytes(32) + hashlib.sha256(cluster_id).digest()).digest()
