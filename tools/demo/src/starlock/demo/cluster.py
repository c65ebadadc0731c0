"""A local confidential cluster on one machine, from real parts (demo and its test).

Node 1 is the control plane: the Kubernetes control plane runs as local processes
(``starlock.kubecluster``) on its address, 127.0.0.1. Every node has its own swtpm, its own
synthetic measured boot, its own loopback address (127.0.0.1, 127.0.0.2, ...; network
namespaces would need privileges the demo does not assume), its own file state disk and its own
``starlock-bootstrapper`` process with the ``local`` driver. The operator runs ``starlock init``
against node 1; then, as Constellation's CLI installs its Helm charts after Init, the demo starts
the key service (with the master secret Init wrote), the join service (with ``join-config``: the
attestation config and the measurement salt Init used) and a verification service; the other
nodes, which have been retrying since they booted, join through attestation.

**What Constellation's Helm charts and operators create in a real cluster, the demo creates in
:meth:`LocalCluster.install_services`**: the join service's RBAC and service account, the
``join-config`` ConfigMap, the NodeVersion ``constellation-version`` with its components
ConfigMap (the one Init created), and the three services as processes instead of pods.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from starlock.kubecluster import ControlPlane
from starlock.kubecluster.process import Component, free_port
from starlock.kubecluster.services import KeyService, install_join_service_objects, service_account_kubeconfig

__all__ = ["DemoNode", "LocalCluster"]

REPO = Path(__file__).resolve().parents[5]
INIT_TIMEOUT = 300.0


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclass
class DemoNode:
    """One node: its TPM, addresses, disk and bootstrapper."""

    index: int
    root: Path
    tpm: Any
    events: list[Any]
    address: str
    init_port: int
    role: str
    recovery_port: int = 0
    bootstrapper: Component | None = None
    started: float = 0.0
    joined_after: float | None = None

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def tcti(self) -> str:
        return str(self.tpm.tcti)

    @property
    def event_log(self) -> Path:
        return self.root / "eventlog.bin"

    def pcr15(self) -> bytes:
        from starlock.nodelock import read_cluster_id_pcr

        return read_cluster_id_pcr(self.tcti)

    def ak_name(self) -> str:
        from starlock.attestation.tpm import parse_tpmt_public
        from starlock.attestation.tpm_device import TpmDevice

        with TpmDevice(self.tcti) as tpm:
            public = tpm.attestation_key().public_area
        return str(parse_tpmt_public(public).name().hex()[:16]) + "…"


@dataclass
class LocalCluster:
    work: Path
    nodes: int = 3
    say: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)
    members: list[DemoNode] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.work.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stack.close()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.say(f"\n=== {name} ===")
        yield
        self.timings[name] = time.monotonic() - started
        self.say(f"    ({self.timings[name]:.1f} s)")

    def _component(self, name: str, args: list[str]) -> Component:
        comp = Component(name, args, self.work / "logs" / f"{name}.log").start()
        self._stack.callback(comp.stop)
        return comp

    # --- the parts -------------------------------------------------------------------------

    def start_control_plane(self) -> None:
        self.plane = self._stack.enter_context(ControlPlane(root=self.work / "control-plane"))
        self.say(f"control plane up: {self.plane.server} (etcd, kube-apiserver, kube-controller-manager)")

    def boot_node(self, index: int, *, kernel_cmdline: str | None = None) -> DemoNode:
        from starlock.attestation.measured_boot import default_boot_events, run_synthetic_boot
        from starlock.attestation.swtpm import Swtpm

        root = self.work / f"node-{index}"
        root.mkdir(mode=0o700, exist_ok=True)
        tpm = self._stack.enter_context(Swtpm(root / "tpm"))
        events = default_boot_events(kernel_cmdline) if kernel_cmdline else default_boot_events()
        run_synthetic_boot(tpm.tcti, root / "eventlog.bin", events)
        address = f"127.0.0.{index}"
        role = "ControlPlane" if index == 1 else "Worker"
        return DemoNode(index, root, tpm, events, address, free_port(), role, recovery_port=free_port())

    def golden_measurements(self) -> dict[str, dict[str, object]]:
        """The measurements an image build publishes: replayed from the reference boot's events."""
        from starlock.attestation.measured_boot import default_boot_events, golden_measurements

        return golden_measurements(default_boot_events())  # PCR 15 zero: not yet bootstrapped

    def write_attestation_config(self) -> Path:
        path = self.work / "attestation-config.json"
        path.write_text(json.dumps({"measurements": self.golden_measurements()}, indent=2))
        return path

    def _metadata(self, node: DemoNode) -> Path:
        me = {"Name": node.name, "ProviderID": f"local:///{node.name}", "Role": node.role, "VPCIP": node.address}
        peers = [{"Name": "node-1", "ProviderID": "local:///node-1", "Role": "ControlPlane", "VPCIP": "127.0.0.1"}]
        doc = {"self": me, "peers": peers, "endpoint": "127.0.0.1", "initSecretHash": self.init_secret_hash}
        path = node.root / "metadata.json"
        path.write_text(json.dumps(doc))
        return path

    def start_bootstrapper(self, node: DemoNode, *, name: str = "") -> None:
        args = _python(
            "starlock.bootstrapper.cli", "--variant", "qemu-vtpm", "--csp", "qemu", "--tcti", node.tcti,
            "--event-log", str(node.event_log), "--metadata", f"local:{self._metadata(node)}",
            "--state-disk", f"file:{node.root / 'state-disk'}", "--driver", "local", "--root", str(node.root / "fs"),
            "--listen", f"{node.address}:{node.init_port}", "--join-service-port", str(self.join_port),
            "--join-interval", "1", "--on-fatal", "exit", "--log-file", str(node.root / "bootstrapper.log"),
            "--recovery-listen", f"{node.address}:{node.recovery_port}",
        )  # fmt: skip
        if node.index == 1:
            args += ["--local-admin-kubeconfig", str(self.plane.admin_kubeconfig)]
        node.started = time.monotonic()
        node.bootstrapper = self._component(name or f"bootstrapper-{node.name}", args)

    def boot_nodes(self) -> None:
        self.init_secret = secrets.token_urlsafe(24).encode()
        (self.work / "init-secret").write_bytes(self.init_secret)
        (self.work / "init-secret").chmod(0o600)
        self.init_secret_hash = bcrypt.hashpw(self.init_secret, bcrypt.gensalt()).decode()
        self.join_port = free_port()  # reserved now: the nodes know it before the service runs
        for index in range(1, self.nodes + 1):
            node = self.boot_node(index)
            self.members.append(node)
            self.start_bootstrapper(node)
            self.say(f"{node.name}: swtpm {node.tcti}, synthetic boot measured, bootstrapper started on {node.address}")

    def init(self) -> dict[str, Any]:
        first = self.members[0]
        config = self.write_attestation_config()
        self.out = self.work / "operator"
        self.out.mkdir(mode=0o700, exist_ok=True)
        args = _python(
            "starlock.cli", "init", "--endpoint", f"{first.address}:{first.init_port}", "--config", str(config),
            "--variant", "qemu-vtpm", "--init-secret", str(self.work / "init-secret"), "--out", str(self.out),
            "--cluster-name", "starlock-demo", "--retry-interval", "1", "--timeout", str(INIT_TIMEOUT),
        )  # fmt: skip
        self.say("$ starlock init --endpoint " + f"{first.address}:{first.init_port} --variant qemu-vtpm ...")
        init = self._component("starlock-init", args)
        code = init.wait(INIT_TIMEOUT + 30)
        self.say(init.tail(5))
        if code != 0:
            raise RuntimeError(f"starlock init failed ({code}); see {init.log}")
        state: dict[str, Any] = json.loads((self.out / "starlock-state.json").read_text())
        self.state = state
        return state

    def install_services(self) -> None:
        from kubernetes import client, config

        from starlock.kms.mastersecret import read_master_secret_file

        plane = self.plane
        admin = config.new_client_from_config(config_file=str(plane.admin_kubeconfig))  # type: ignore[no-untyped-call]
        core: Any = client.CoreV1Api(admin)
        components_cm = next(
            cm.metadata.name
            for cm in core.list_namespaced_config_map("kube-system").items
            if cm.metadata.name.startswith("k8s-components-sha256-")
        )
        install_join_service_objects(
            plane, REPO / "deploy/kubernetes/base/join-service-rbac.yaml", components=[], components_name=components_cm
        )
        salt = bytes.fromhex(self.state["measurementSalt"])
        attestation_config = json.dumps({"measurements": self.golden_measurements()})
        core.create_namespaced_config_map(
            "kube-system",
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="join-config"),
                data={"attestationConfig": attestation_config},
                binary_data={"measurementSalt": __import__("base64").b64encode(salt).decode()},
            ),
        )
        confdir = self.work / "join-config"  # the ConfigMap as the pod would see it mounted
        confdir.mkdir(mode=0o700, exist_ok=True)
        (confdir / "attestationConfig").write_text(attestation_config)
        (confdir / "measurementSalt").write_bytes(salt)

        master = read_master_secret_file(self.out / "constellation-mastersecret.json")
        keys = KeyService.create(parent=self.work)
        (keys.directory / "mastersecret").write_bytes(master.key)
        (keys.directory / "salt").write_bytes(master.salt)
        keys.start()
        self._stack.callback(keys.close)
        self.say(f"key service: {keys.endpoint} (the master secret from starlock init)")

        kubeconfig = service_account_kubeconfig(plane, self.work / "join-service.kubeconfig")
        self.join_service = self._component(
            "join-service",
            _python(
                "starlock.joinservice", "--attestation-variant", "qemu-vtpm", "--key-service-endpoint", keys.endpoint,
                "--config-dir", str(confdir), "--kubernetes-dir", str(plane.root), "--kubeconfig", str(kubeconfig),
                "--listen", f"127.0.0.1:{self.join_port}", "--api-server-endpoint", plane.server.removeprefix("https://"),
                "-v", "2",
            ),
        )  # fmt: skip
        self.join_service.wait_until(
            lambda: "listening on port" in self.join_service.log.read_text(), timeout=60, what="listening"
        )
        self.say(f"join service: 127.0.0.1:{self.join_port} (NodePort 30090 in a real cluster)")

    def wait_joined(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.members:
            assert node.bootstrapper is not None
            code = node.bootstrapper.wait(max(1.0, deadline - time.monotonic()))
            if code != 0:
                raise RuntimeError(f"{node.name}: bootstrapper exited {code}; see {node.bootstrapper.log}")
            node.joined_after = time.monotonic() - node.started

    def node_rows(self) -> list[dict[str, str]]:
        from kubernetes import client, config

        admin = config.new_client_from_config(config_file=str(self.out / "starlock-admin.conf"))  # type: ignore[no-untyped-call]
        core: Any = client.CoreV1Api(admin)
        ready = {
            n.metadata.name: {c.type: c.status for c in (n.status.conditions or [])}.get("Ready", "Unknown")
            for n in core.list_node().items
        }
        cluster_id = bytes.fromhex(self.state["clusterID"])
        mark = hashlib.sha256(bytes(32) + hashlib.sha256(cluster_id).digest()).digest()
        rows = []
        for node in self.members:
            pcr15 = node.pcr15()
            rows.append(
                {
                    "name": node.name,
                    "role": node.role,
                    "variant": "qemu-vtpm",
                    "ak": node.ak_name(),
                    "pcr15": "marked" if pcr15 == mark else ("zero" if pcr15 == bytes(32) else "OTHER"),
                    "ready": ready.get(node.name, "absent"),
                    "time": f"{node.joined_after:.1f} s" if node.joined_after is not None else "-",
                }
            )
        return rows

    def start_verification_service(self, node: DemoNode) -> int:
        port = free_port()
        comp = self._component(
            f"verify-{node.name}",
            _python(
                "starlock.verificationservice", "--attestation-variant", "qemu-vtpm", "--tcti", node.tcti,
                "--event-log", str(node.event_log), "--grpc-listen", f"{node.address}:{port}",
                "--http-listen", f"{node.address}:0", "--health-listen", f"{node.address}:0",
            ),
        )  # fmt: skip
        comp.wait_until(lambda: _port_open(node.address, port), timeout=60, what="listening")
        return port

    def verify(self, node: DemoNode, port: int, *, cluster_id: str | None = None) -> tuple[int, str]:
        args = _python(
            "starlock.cli", "verify", "--endpoint", f"{node.address}:{port}",
            "--config", str(self.work / "attestation-config.json"), "--variant", "qemu-vtpm",
        )  # fmt: skip
        if cluster_id:
            args += ["--cluster-id", cluster_id]
        comp = self._component(f"starlock-verify-{node.name}-{time.monotonic_ns()}", args)
        code = comp.wait(120)
        return code, comp.log.read_text()

    def kubectl_get_nodes(self) -> str:
        return self.plane.kubectl("get", "nodes", "-o", "wide", kubeconfig=self.out / "starlock-admin.conf")

    # --- a full-cluster reboot ---------------------------------------------------------------

    def reboot_whole_cluster(self) -> DemoNode:
        """Every control plane goes down, the join service with them; node 1 boots again: its
        TPM restarts (PCR 15 zero), the firmware measures the same boot, its bootstrapper finds
        the state disk initialized and waits for a rejoin ticket that no one can issue, and for
        the operator on its recovery server."""
        from starlock.attestation.measured_boot import run_synthetic_boot

        self.join_service.stop()
        node = self.members[0]
        node.tpm.restart()
        run_synthetic_boot(node.tcti, node.event_log, node.events)
        (node.root / "fs" / "run" / "starlock" / "nodelock").unlink(missing_ok=True)
        self.say(
            f"{node.name}: rebooted (PCR 15 {'zero' if node.pcr15() == bytes(32) else 'NOT ZERO'}); join service down"
        )
        self.start_bootstrapper(node, name=f"bootstrapper-{node.name}-reboot")
        bootstrapper = node.bootstrapper
        assert bootstrapper is not None
        bootstrapper.wait_until(
            lambda: _port_open(node.address, node.recovery_port), timeout=60, what="the recovery server listening"
        )
        self.say(f"{node.name}: no join service answers; recovery server on {node.address}:{node.recovery_port}")
        return node

    def recover(self, node: DemoNode) -> str:
        """``starlock recover`` with the master secret from Init; node 1 unlocks, re-marks, starts."""
        args = _python(
            "starlock.cli", "recover", "--endpoint", f"{node.address}:{node.recovery_port}",
            "--config", str(self.work / "attestation-config.json"), "--variant", "qemu-vtpm",
            "--master-secret", str(self.out / "constellation-mastersecret.json"), "--retry-interval", "1",
        )  # fmt: skip
        self.say(f"$ starlock recover --endpoint {node.address}:{node.recovery_port} --master-secret ...")
        comp = self._component(f"starlock-recover-{node.name}", args)
        code = comp.wait(120)
        self.say(comp.tail(3))
        if code != 0:
            raise RuntimeError(f"starlock recover failed ({code}); see {comp.log}")
        assert node.bootstrapper is not None
        if (exit_code := node.bootstrapper.wait(60)) != 0:
            raise RuntimeError(f"{node.name}: bootstrapper exited {exit_code}; see {node.bootstrapper.log}")
        cluster_id = bytes.fromhex(self.state["clusterID"])
        mark = hashlib.sha256(bytes(32) + hashlib.sha256(cluster_id).digest()).digest()
        same = "marked again with this cluster's ID" if node.pcr15() == mark else "NOT MARKED"
        return f"{node.name}: state disk unlocked, PCR 15 {same}, kubelet started"

    # --- refusals --------------------------------------------------------------------------

    def _refusal_reason(self, since: int) -> str:
        log = self.join_service.log.read_text(errors="replace")[since:]
        for line in log.splitlines():
            if "rejected connection" in line or ('"outcome": "' in line and '"ok"' not in line):
                try:
                    doc = json.loads(line)
                except ValueError:
                    return line
                text = str(doc.get("error") or doc.get("msg"))
                return text.split(": ", 1)[1] if text.startswith("atls-grpc: rejected") else text
        return ""

    def refuse_tampered_boot(self) -> str:
        """A node whose boot differs from the published measurements asks to join."""
        node = self.boot_node(self.nodes + 1, kernel_cmdline="console=ttyS0 root=/dev/vda2 rw init=/bin/sh")
        since = len(self.join_service.log.read_bytes())
        reply = _ask_for_ticket(node, self.join_port)
        reason = ""
        deadline = time.monotonic() + 10
        while not reason and time.monotonic() < deadline:
            reason = self._refusal_reason(since)
            time.sleep(0.2)
        return f"{reply}; join service: {reason}"

    def refuse_replay(self) -> str:
        """A node that has joined (PCR 15 marked) asks for a ticket again."""
        node = self.members[-1]
        since = len(self.join_service.log.read_bytes())
        reply = _ask_for_ticket(node, self.join_port)
        reason = ""
        deadline = time.monotonic() + 10
        while not reason and time.monotonic() < deadline:
            reason = self._refusal_reason(since)
            time.sleep(0.2)
        return f"{reply}; join service: {reason}"


def _port_open(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _ask_for_ticket(node: DemoNode, port: int) -> str:
    """One IssueJoinTicket over aTLS with the node's own TPM, as its join client would."""
    import grpc
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from starlock.atls import ClientConfig
    from starlock.atls.rpc import attested_channel
    from starlock.attestation.qemu import QemuVtpmIssuer
    from starlock.joinproto import join_pb2, join_pb2_grpc

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node.name}"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    request = join_pb2.IssueJoinTicketRequest(
        disk_uuid="00000000-0000-4000-8000-00000000000" + str(node.index % 10),
        certificate_request=csr.public_bytes(serialization.Encoding.DER),
    )
    issuer = QemuVtpmIssuer(node.tcti, event_log_path=node.event_log)
    try:
        with attested_channel(f"127.0.0.1:{port}", ClientConfig(issuer=issuer)) as channel:
            stub = join_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped
            stub.IssueJoinTicket(request, timeout=30)
    except grpc.RpcError as exc:
        return f"refused ({exc.code().name})"
    return "ISSUED (this should not happen)"
