"""The join client against the real join service, key service and control plane (spec §5.5)."""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import JoinCluster, Node
from cryptography import x509
from kubernetes import client, config

from starlock.bootstrapper.cleaner import Cleaner
from starlock.bootstrapper.joinclient import JoinClient, JoinPaths, JoinTiming
from starlock.bootstrapper.localdriver import DiscoveryError, LocalDriver, discover_ca
from starlock.bootstrapper.nodestate import Role, read_node_state
from starlock.bootstrapper.statedisk import FileStateDisk
from starlock.kms import ClusterKMS
from starlock.kms.derive import derive_cluster_id
from starlock.nodelock import NodeLock


def _client(
    node: Node, join_service: Any, name: str, role: Role, endpoints: list[str]
) -> tuple[JoinClient, FileStateDisk, JoinPaths, Cleaner]:
    disk = FileStateDisk(node.root / "state-disk")
    paths = JoinPaths(
        ssh_dir=disk.mount_point() / "ssh",
        pki_dir=node.root / "etc-kubernetes" / "pki",
        kubelet_pki_dir=disk.mount_point() / "kubelet" / "pki",
    )
    cleaner = Cleaner().start()
    join = JoinClient(
        issuer=node.issuer,
        endpoints=lambda: list(endpoints),
        disk=disk,
        node_lock=NodeLock(node.tpm.tcti, node.root / "nodelock" / "lock"),
        driver=LocalDriver(name, "192.0.2.40", None, disk.mount_point() / "kubelet"),
        on_locked=cleaner.clean,
        role=role,
        node_name=name,
        node_ip="192.0.2.40",
        principals=lambda: ["192.0.2.40", name],
        paths=paths,
        timing=JoinTiming(interval=0.05, timeout=30),
    )
    return join, disk, paths, cleaner


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_worker_joins_after_an_unreachable_endpoint(node: Node, join_service: Any, join_cluster: JoinCluster) -> None:
    endpoints = ["", f"127.0.0.1:{_closed_port()}", f"127.0.0.1:{join_service.port}"]  # empty host skipped
    join, disk, paths, _ = _client(node, join_service, "worker-7", Role.WORKER, endpoints)
    join.start()
    assert join.joined

    kms = ClusterKMS(join_cluster.master, join_cluster.salt)
    state = read_node_state(disk.mount_point() / "constellation" / "node_state.json")
    assert state.role is Role.WORKER and len(state.measurement_salt) == 32
    cluster_id = derive_cluster_id(kms.get_dek("key-measurementSecret", 32), state.measurement_salt)
    assert node.pcr15() == hashlib.sha256(bytes(32) + hashlib.sha256(cluster_id).digest()).digest()
    disk.unlock(kms.get_dek("key-" + disk.uuid(), 32))  # re-keyed with the KMS key for its UUID

    cert = x509.load_pem_x509_certificate((paths.kubelet_pki_dir / "kubelet-client-crt.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=system:node:worker-7,O=system:nodes"
    for written in (paths.kubelet_pki_dir / "kubelet-client-key.pem", paths.ssh_dir / "ssh_ca.pub"):
        assert written.stat().st_mode & 0o777 == 0o600
    assert not paths.pki_dir.exists()  # a worker gets no control-plane files

    admin = config.new_client_from_config(config_file=str(join_cluster.plane.admin_kubeconfig))
    registered = client.CoreV1Api(admin).read_node("worker-7")
    assert {c.type: c.status for c in registered.status.conditions}["Ready"] == "True"
    assert any(m.manager for m in registered.metadata.managed_fields)


def test_control_plane_gets_the_pki_files(node: Node, join_service: Any, join_cluster: JoinCluster) -> None:
    join, _, paths, _ = _client(node, join_service, "cp-9", Role.CONTROL_PLANE, [f"127.0.0.1:{join_service.port}"])
    join.start()
    assert join.joined
    pki = join_cluster.plane.pki_dir
    for name in (
        "ca.crt",
        "ca.key",
        "sa.key",
        "sa.pub",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
    ):
        assert (paths.pki_dir / name).read_bytes() == (pki / name).read_bytes()
        assert (paths.pki_dir / name).stat().st_mode & 0o777 == 0o600
    admin = config.new_client_from_config(config_file=str(join_cluster.plane.admin_kubeconfig))
    client.CustomObjectsApi(admin).delete_cluster_custom_object(
        "update.edgeless.systems", "v1alpha1", "joiningnodes", "control-plane"
    )


def test_lock_already_taken_means_an_init_won(node: Node, join_service: Any) -> None:
    join, disk, _, _ = _client(node, join_service, "worker-8", Role.WORKER, [f"127.0.0.1:{join_service.port}"])
    # another process (the Init) took the lock; the TPM is left unmarked so the node still attests
    from starlock.nodelock._lockfile import check_lock_file_location, create_lock_file

    (node.root / "nodelock").mkdir(mode=0o700, exist_ok=True)
    assert create_lock_file(check_lock_file_location(node.root / "nodelock" / "lock"))
    runner = threading.Thread(target=join.start)
    runner.start()
    runner.join(60)
    assert not runner.is_alive()
    assert not join.joined
    assert not disk.is_initialized()


def test_stop_ends_the_loop(node: Node, join_service: Any) -> None:
    join, _, _, _ = _client(node, join_service, "worker-9", Role.WORKER, [f"127.0.0.1:{_closed_port()}"])
    runner = threading.Thread(target=join.start)
    runner.start()
    join.stop()
    runner.join(10)
    assert not runner.is_alive() and not join.joined


def test_discovery_checks_the_signature_and_the_pin(join_cluster: JoinCluster, tmp_path: Path) -> None:
    import datetime

    import yaml

    from starlock.joinservice.tokens import ca_pins_from_kubeconfig, generate_token, token_secret_manifest

    admin = config.new_client_from_config(config_file=str(join_cluster.plane.admin_kubeconfig))
    token = generate_token()
    client.CoreV1Api(admin).create_namespaced_secret(
        "kube-system", token_secret_manifest(token, datetime.datetime.now(datetime.UTC))
    )
    pin = ca_pins_from_kubeconfig(yaml.safe_load(join_cluster.plane.admin_kubeconfig.read_text()))[0]
    endpoint = join_cluster.plane.server.removeprefix("https://")
    # the bootstrap signer signs cluster-info for the new token a moment later: discovery waits
    ca = discover_ca(endpoint, str(token), pin, wait_for_signature=30)
    assert ca == join_cluster.plane.ca_cert.read_bytes()
    with pytest.raises(DiscoveryError, match="pinned"):
        discover_ca(endpoint, str(token), "sha256:" + "00" * 32)
    with pytest.raises(DiscoveryError, match="not signed"):  # a signature exists: no waiting
        discover_ca(endpoint, f"{token.token_id}.{'0' * 16}", pin, wait_for_signature=30)
    with pytest.raises(DiscoveryError, match="not signed"):  # never signed: waits, then fails
        discover_ca(endpoint, f"zzzzzz.{'0' * 16}", pin, wait_for_signature=1)
