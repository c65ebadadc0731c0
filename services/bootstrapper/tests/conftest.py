"""Real parts for the bootstrapper: a booted swtpm node, the node lock on it, the control plane,
the init server behind a real aTLS front end, and a real aTLS client that checks the node."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import grpc
import pytest

from starlock.atls import ClientConfig, ServerConfig
from starlock.atls.rpc import AttestedServer, attested_channel
from starlock.bootstrapper.cleaner import Cleaner
from starlock.bootstrapper.initserver import InitServer
from starlock.bootstrapper.localdriver import LocalDriver
from starlock.bootstrapper.statedisk import FileStateDisk
from starlock.joinproto import init_pb2, init_pb2_grpc
from starlock.kms.mastersecret import MasterSecret
from starlock.kubecluster import ControlPlane

pytest_plugins = ["starlock.kubecluster.pytest_plugin"]

INIT_SECRET = b"correct-horse-battery-staple-0123"


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Node:
    """A booted software-TPM node: its TCTI, issuer and golden measurements (PCR 15 = zero)."""

    tpm: Any
    issuer: Any
    measurements: dict[str, dict[str, object]]
    root: Path

    def validator(self, *, enforce_pcr15: bool = True) -> Any:
        from starlock.attestation import Variant, load_attestation_config, validator_for

        measurements = dict(self.measurements)
        if enforce_pcr15:
            measurements["15"] = {"expected": "00" * 32, "warnOnly": False}
        return validator_for(load_attestation_config({"measurements": measurements}, Variant.QEMU_VTPM))

    def pcr15(self) -> bytes:
        from starlock.nodelock._tpm import Tpm

        with Tpm(self.tpm.tcti) as tpm:
            return bytes(tpm.read_cluster_id_pcr())


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    try:
        import tpm2_pytss  # noqa: F401

        from starlock.attestation.swtpm import SwtpmNotFound, booted_swtpm, find_swtpm

        binary = find_swtpm()
    except (ImportError, SwtpmNotFound) as exc:
        skip_or_fail(f"swtpm / tpm2-pytss not available: {exc}")
        raise
    from starlock.attestation.qemu import QemuVtpmIssuer

    with booted_swtpm(tmp_path, binary=binary) as booted:
        issuer = QemuVtpmIssuer(booted.tcti, event_log_path=booted.event_log)
        yield Node(booted.tpm, issuer, booted.measurements(pcr15=None), tmp_path)


@dataclass
class InitNode:
    node: Node
    server: InitServer
    front: AttestedServer
    disk: FileStateDisk
    cleaner: Cleaner
    ssh_dir: Path
    master: MasterSecret

    def request(self, **overrides: Any) -> init_pb2.InitRequest:
        fields: dict[str, Any] = {
            "kms_uri": self.master.to_uri(),
            "storage_uri": "storage://no-store",
            "measurement_salt": secrets.token_bytes(32),
            "kubernetes_version": "v1.37.2",
            "init_secret": INIT_SECRET,
            "cluster_name": "starlock-test",
            "apiserver_cert_sans": ["203.0.113.7"],
            "kubernetes_components": [
                {
                    "url": "https://example.invalid/kubeadm",
                    "hash": "sha256:" + "ab" * 32,
                    "install_path": "/run/state/bin/kubeadm",
                }
            ],
        }
        fields.update(overrides)
        return init_pb2.InitRequest(**fields)

    def init(self, request: init_pb2.InitRequest, *, enforce_pcr15: bool = True) -> list[init_pb2.InitResponse]:
        config = ClientConfig(validators=[self.node.validator(enforce_pcr15=enforce_pcr15)])
        with attested_channel(f"127.0.0.1:{self.front.port}", config) as channel:
            return list(init_pb2_grpc.APIStub(channel).Init(request, timeout=120))


@pytest.fixture
def init_node(node: Node, kube_control_plane: ControlPlane) -> Iterator[Callable[..., InitNode]]:
    from starlock.nodelock import NodeLock

    started: list[InitNode] = []

    def make(*, logs: bytes = b"", lock: Any = None) -> InitNode:
        disk = FileStateDisk(node.root / "state-disk")
        ssh_dir = disk.mount_point() / "ssh"
        cleaner = Cleaner()
        server = InitServer(
            init_secret_hash=bcrypt.hashpw(INIT_SECRET, bcrypt.gensalt(rounds=4)),
            node_lock=lock or NodeLock(node.tpm.tcti, node.root / "nodelock" / "lock"),
            disk=disk,
            driver=LocalDriver(
                "starlock-cp-0",
                "192.0.2.30",
                lambda: kube_control_plane.admin_kubeconfig,
                disk.mount_point() / "kubelet",
            ),
            cleaner=cleaner,
            ssh_dir=ssh_dir,
            principals=lambda: ["192.0.2.30", "starlock-cp-0"],
            read_logs=lambda: logs,
        )
        grpc_server = grpc.server(ThreadPoolExecutor(max_workers=4))
        init_pb2_grpc.add_APIServicer_to_server(server, grpc_server)
        front = AttestedServer(grpc_server, ServerConfig(issuer=node.issuer), "127.0.0.1:0").start()
        cleaner.register(server.stop)
        cleaner.start()
        made = InitNode(
            node, server, front, disk, cleaner, ssh_dir, MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32))
        )
        started.append(made)
        return made

    yield make
    for made in started:
        made.front.stop(grace=1)


# --- a real join service for the join client -----------------------------------------------------


@dataclass
class JoinCluster:
    plane: ControlPlane
    master: bytes
    salt: bytes
    service_kubeconfig: Path
    keyservice_endpoint: str


@pytest.fixture(scope="session")
def join_cluster(kube_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JoinCluster]:
    """The join service's side of the cluster: RBAC, NodeVersion, components, a key service."""
    from starlock.kubecluster.services import KeyService, install_join_service_objects, service_account_kubeconfig

    plane = kube_control_plane
    install_join_service_objects(
        plane,
        Path(__file__).parents[3] / "deploy" / "kubernetes" / "base" / "join-service-rbac.yaml",
        components=[
            {"url": "https://example.invalid/kubeadm", "hash": "sha256:" + "ab" * 32, "install_path": "/opt/kubeadm"}
        ],
        components_name="k8s-components-join",
    )
    kubeconfig = service_account_kubeconfig(plane, tmp_path_factory.mktemp("join-cluster") / "join-service.kubeconfig")
    with KeyService.create() as keys:
        yield JoinCluster(plane, keys.master_secret, keys.salt, kubeconfig, keys.endpoint)


@pytest.fixture
def join_service(join_cluster: JoinCluster, node: Node, tmp_path: Path) -> Iterator[Any]:
    """The real join service, validating qemu-vtpm nodes with this node's golden values and PCR 15 = 0."""
    import json

    from starlock.joinservice.cli import parse_args, start

    confdir = tmp_path / "join-config"
    confdir.mkdir()
    (confdir / "measurementSalt").write_bytes(secrets.token_bytes(32))
    measurements = dict(node.measurements)
    measurements["15"] = {"expected": "00" * 32, "warnOnly": False}
    (confdir / "attestationConfig").write_text(json.dumps({"measurements": measurements}))
    endpoint = join_cluster.plane.server.removeprefix("https://")
    service = start(
        parse_args(
            [
                "--attestation-variant", "qemu-vtpm", "--key-service-endpoint", join_cluster.keyservice_endpoint,
                "--config-dir", str(confdir), "--kubernetes-dir", str(join_cluster.plane.root),
                "--kubeconfig", str(join_cluster.service_kubeconfig), "--listen", "127.0.0.1:0",
                "--api-server-endpoint", endpoint,
            ]
        )
    )  # fmt: skip
    assert service.ready.wait(30)
    yield service
    service.stop(grace=2)
