"""``starlock-bootstrapper`` as a real process on a swtpm node: init, already bootstrapped, join,
reboot and rejoin, recovery by the operator, the fatal path (disk marked for reset), and no
secret in any log."""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import grpc
import pytest
from conftest import INIT_SECRET, JoinCluster, Node
from kubernetes import client, config

from starlock.atls import ClientConfig
from starlock.atls.rpc import attested_channel
from starlock.bootstrapper.cli import EXIT_FATAL
from starlock.bootstrapper.nodestate import Role, read_node_state
from starlock.bootstrapper.statedisk import FileStateDisk
from starlock.joinproto import init_pb2, init_pb2_grpc, recover_pb2, recover_pb2_grpc
from starlock.kms import ClusterKMS
from starlock.kms.derive import derive_cluster_id
from starlock.kms.mastersecret import MasterSecret
from starlock.kubecluster import ControlPlane

BOOTSTRAP_TOKEN = re.compile(rb"[a-z0-9]{6}\.[a-z0-9]{16}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    """One bootstrapper process on the node; every log it wrote is kept for the secret scan."""

    node: Node
    name: str
    role: Role
    endpoint: str = ""
    join_port: int = 30090
    admin_kubeconfig: Path | None = None
    recovery_port: int = field(default_factory=_free_port)  # never the default 0.0.0.0:9999
    verbose: bool = True  # the secret scan covers the debug level too
    logs: list[Path] = field(default_factory=list)

    @property
    def disk_dir(self) -> Path:
        return self.node.root / "state-disk"

    def write_metadata(self) -> Path:
        path = self.node.root / "metadata.json"
        me = {"Name": self.name, "ProviderID": f"qemu:///{self.name}", "Role": self.role.value, "VPCIP": "127.0.0.1"}
        init_hash = bcrypt.hashpw(INIT_SECRET, bcrypt.gensalt(rounds=4)).decode()
        path.write_text(json.dumps({"self": me, "peers": [], "endpoint": self.endpoint, "initSecretHash": init_hash}))
        return path

    def start(self, listen_port: int) -> subprocess.Popen[bytes]:
        n = len(self.logs)
        log = self.node.root / f"bootstrapper-{n}.log"
        self.logs += [log, self.node.root / f"stderr-{n}.log"]
        args = [
            sys.executable, "-m", "starlock.bootstrapper.cli", "--variant", "qemu-vtpm", "--csp", "qemu",
            "--tcti", self.node.tpm.tcti, "--event-log", str(self.node.root / "eventlog.bin"),
            "--metadata", f"local:{self.write_metadata()}", "--state-disk", f"file:{self.disk_dir}",
            "--driver", "local", "--root", str(self.node.root / "fs"), "--listen", f"127.0.0.1:{listen_port}",
            "--join-service-port", str(self.join_port), "--join-interval", "0.05", "--join-timeout", "30",
            "--recovery-listen", f"127.0.0.1:{self.recovery_port}",
            "--on-fatal", "exit", "--log-file", str(log),
        ]  # fmt: skip
        if self.admin_kubeconfig:
            args += ["--local-admin-kubeconfig", str(self.admin_kubeconfig)]
        if self.verbose:
            args.append("-v")
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=(self.node.root / f"stderr-{n}.log").open("wb"))

    def run(self, timeout: float = 120) -> int:
        proc = self.start(_free_port())
        return proc.wait(timeout)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the bootstrapper exited before its init server listened"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the init server did not listen on {port}")


def _secret_forms(*values: bytes) -> list[bytes]:
    forms: list[bytes] = []
    for v in values:
        forms += [v, v.hex().encode(), base64.b64encode(v), base64.b64encode(v).rstrip(b"=")]
    return forms


def _assert_no_secret(runs: list[Run], secrets_: list[bytes]) -> None:
    for run in runs:
        for path in run.logs:
            data = path.read_bytes() if path.exists() else b""
            for form in _secret_forms(*secrets_):
                assert form not in data, f"a secret appears in {path.name}"
            assert not BOOTSTRAP_TOKEN.search(data), f"a bootstrap token appears in {path.name}"


@pytest.fixture
def reboot(node: Node) -> Iterator[Any]:
    """Power-cycle the node: the TPM restarts (PCRs reset), the firmware measures the same boot
    again, and /run (the node lock file) is empty again."""
    from starlock.attestation.measured_boot import run_synthetic_boot

    def do() -> None:
        node.tpm.restart()
        run_synthetic_boot(node.tpm.tcti, node.root / "eventlog.bin")
        lock = node.root / "fs" / "run" / "starlock" / "nodelock"
        lock.unlink(missing_ok=True)

    yield do


def _init_over_atls(node: Node, run: Run) -> tuple[MasterSecret, bytes, bytes]:
    """Init the node through its init server; the master secret, the measurement salt, the cluster ID."""
    port = _free_port()
    proc = run.start(port)
    _wait_listening(port, proc)
    master = MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32))
    salt = secrets.token_bytes(32)
    request = init_pb2.InitRequest(
        kms_uri=master.to_uri(), storage_uri="storage://no-store", measurement_salt=salt,
        kubernetes_version="v1.37.2", init_secret=INIT_SECRET, cluster_name="proc",
    )  # fmt: skip
    with attested_channel(f"127.0.0.1:{port}", ClientConfig(validators=[node.validator()])) as channel:
        responses = list(init_pb2_grpc.APIStub(channel).Init(request, timeout=120))
    assert [r.WhichOneof("kind") for r in responses] == ["init_success"]
    assert proc.wait(60) == 0  # the node is bootstrapped; the process is done
    return master, salt, bytes(responses[0].init_success.cluster_id)


def test_init_then_already_bootstrapped(node: Node, kube_control_plane: ControlPlane) -> None:
    run = Run(node, "proc-cp-0", Role.CONTROL_PLANE, admin_kubeconfig=kube_control_plane.admin_kubeconfig)
    master, salt, cluster_id = _init_over_atls(node, run)
    kms = ClusterKMS(master.key, master.salt)
    measurement_secret = kms.get_dek("key-measurementSecret", 32)
    assert cluster_id == derive_cluster_id(measurement_secret, salt)
    assert node.pcr15() != bytes(32)
    disk = FileStateDisk(run.disk_dir)
    disk_key = kms.get_dek("key-" + disk.uuid(), 32)
    disk.unlock(disk_key)

    # started again on the same boot: PCR 15 is marked, so only the kubelet starts, no server
    port = _free_port()
    proc = run.start(port)
    assert proc.wait(60) == 0
    assert "node already bootstrapped: kubelet started" in run.log_text()
    assert "init server listening" not in run.logs[-2].read_text()
    _assert_no_secret(
        [run],
        [master.key, master.salt, INIT_SECRET, measurement_secret, disk_key, kms.get_dek("key-ca_emergency_ssh", 32)],
    )


def test_join_reboot_rejoin(node: Node, join_service: Any, join_cluster: JoinCluster, reboot: Any) -> None:
    run = Run(node, "proc-worker-1", Role.WORKER, endpoint="127.0.0.1", join_port=join_service.port)
    assert run.run() == 0
    admin = config.new_client_from_config(config_file=str(join_cluster.plane.admin_kubeconfig))
    core = client.CoreV1Api(admin)
    assert {c.type: c.status for c in core.read_node("proc-worker-1").status.conditions}["Ready"] == "True"
    marked = node.pcr15()
    assert marked != bytes(32)
    disk = FileStateDisk(run.disk_dir)
    assert disk.is_initialized()

    # the Node goes NotReady while the node is down
    core.patch_node_status("proc-worker-1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    reboot()
    assert node.pcr15() == bytes(32)
    assert run.run() == 0  # disk initialized + PCR 15 zero → IssueRejoinTicket, unlock, re-mark, kubelet
    assert node.pcr15() == marked  # the same cluster ID, derived from the rejoin ticket and node_state.json
    assert "node rejoined" in run.log_text()
    assert {c.type: c.status for c in core.read_node("proc-worker-1").status.conditions}["Ready"] == "True"
    assert read_node_state(disk.mount_point() / "constellation" / "node_state.json").role is Role.WORKER

    kms = ClusterKMS(join_cluster.master, join_cluster.salt)
    _assert_no_secret(
        [run],
        [
            join_cluster.master,
            join_cluster.salt,
            kms.get_dek("key-measurementSecret", 32),
            kms.get_dek("key-" + disk.uuid(), 32),
        ],
    )


def test_rejoin_with_a_key_that_does_not_open_the_disk_fails_without_marking(
    node: Node, join_service: Any, reboot: Any
) -> None:
    """A disk initialized under another key: the rejoin ticket's key does not open it; the node
    is not marked and the process fails (systemd restarts it; the disk is not reset)."""
    run = Run(node, "proc-worker-2", Role.WORKER, endpoint="127.0.0.1", join_port=join_service.port)
    disk = FileStateDisk(run.disk_dir)
    disk.update_passphrase(secrets.token_bytes(32))
    assert run.run() == 1
    assert "the rejoin key does not open the state disk" in run.log_text()
    assert node.pcr15() == bytes(32)
    assert disk.is_initialized()


def test_fatal_join_error_marks_the_disk_for_reset(node: Node, join_service: Any) -> None:
    run = Run(node, "proc-worker-3", Role.WORKER, endpoint="127.0.0.1", join_port=join_service.port)
    stale = FileStateDisk(run.disk_dir).mount_point() / "constellation" / "node_state.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # node_state.json is written create-exclusive: this makes the join fail after the lock
    assert run.run() == EXIT_FATAL
    assert node.pcr15() != bytes(32)  # past the point of no return
    assert not FileStateDisk(run.disk_dir).is_initialized()  # re-keyed, then marked for reset
    assert "fatal bootstrap error; the state disk is marked for reset" in run.log_text()


def test_fatal_init_error_marks_the_disk_for_reset_and_streams_the_log(node: Node, tmp_path: Path) -> None:
    run = Run(node, "proc-cp-9", Role.CONTROL_PLANE, admin_kubeconfig=tmp_path / "no-such-admin.conf")
    port = _free_port()
    proc = run.start(port)
    _wait_listening(port, proc)
    master = MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32))
    request = init_pb2.InitRequest(
        kms_uri=master.to_uri(), storage_uri="storage://no-store", measurement_salt=secrets.token_bytes(32),
        kubernetes_version="v1.37.2", init_secret=INIT_SECRET,
    )  # fmt: skip
    responses: list[init_pb2.InitResponse] = []
    config = ClientConfig(validators=[node.validator()])
    with attested_channel(f"127.0.0.1:{port}", config) as channel, pytest.raises(grpc.RpcError) as failed:
        responses.extend(init_pb2_grpc.APIStub(channel).Init(request, timeout=120))
    assert "initializing the node" in str(failed.value)
    assert responses[0].WhichOneof("kind") == "init_failure"
    streamed = b"".join(r.log.log for r in responses[1:])
    assert b'"msg": "Init failed"' in streamed and all(len(r.log.log) <= 1024 for r in responses[1:])
    assert proc.wait(60) == EXIT_FATAL
    assert not FileStateDisk(run.disk_dir).is_initialized()
    kms = ClusterKMS(master.key, master.salt)
    _assert_no_secret([run], [master.key, master.salt, INIT_SECRET, kms.get_dek("key-measurementSecret", 32)])


def test_startup_errors_are_one_clear_line(node: Node, tmp_path: Path) -> None:
    cases = [
        (["--variant", "azure-sev-snp", "--metadata", "local:/x"], "cloud variants need their instance-metadata"),
        (["--variant", "qemu-vtpm"], "no metadata provider for CSP"),
        (["--variant", "qemu-vtpm", "--metadata", "local:/x", "--state-disk", "tmpfs:/x"], "unknown state disk"),
    ]
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "starlock.bootstrapper.cli", "--tcti", node.tpm.tcti, *args],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, check=False,
        )  # fmt: skip
        assert done.returncode in (1, 2) and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def _recover(node: Node, port: int, kms_uri: str) -> None:
    message = recover_pb2.RecoverMessage(kms_uri=kms_uri, storage_uri="storage://no-store")
    with attested_channel(f"127.0.0.1:{port}", ClientConfig(validators=[node.validator()])) as channel:
        recover_pb2_grpc.APIStub(channel).Recover(message, timeout=60)


def test_control_plane_recovers_with_the_operators_master_secret(
    node: Node, kube_control_plane: ControlPlane, reboot: Any
) -> None:
    """The whole cluster rebooted: no join service answers, the control plane waits on its recovery
    server; a malformed URI and another cluster's secret are refused without any change, the
    right secret unlocks the disk and marks PCR 15 with the same cluster ID as before."""
    run = Run(node, "proc-cp-rec", Role.CONTROL_PLANE, admin_kubeconfig=kube_control_plane.admin_kubeconfig)
    master, _, _ = _init_over_atls(node, run)
    marked = node.pcr15()
    reboot()
    run.join_port = _free_port()  # no join service anywhere: every rejoin round fails
    run.endpoint = "127.0.0.1"
    proc = run.start(_free_port())
    _wait_listening(run.recovery_port, proc)

    key_b64 = base64.urlsafe_b64encode(master.key).decode()
    with pytest.raises(grpc.RpcError) as malformed:
        _recover(node, run.recovery_port, f"kms://cluster-kms?key={key_b64}")  # the salt is missing
    assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'salt' is missing" in malformed.value.details() and key_b64 not in malformed.value.details()

    other = MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32))
    with pytest.raises(grpc.RpcError) as wrong:
        _recover(node, run.recovery_port, other.to_uri())
    assert wrong.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "does not open the node's state disk" in wrong.value.details()
    assert proc.poll() is None and node.pcr15() == bytes(32)  # nothing changed; still waiting

    _recover(node, run.recovery_port, master.to_uri())
    assert proc.wait(60) == 0
    assert node.pcr15() == marked  # the cluster ID from the recovered secret and node_state.json
    log = run.log_text()
    assert "recovery server listening" in log and '"source": "recovery"' in log
    assert "node already bootstrapped: kubelet started" in log
    kms = ClusterKMS(master.key, master.salt)
    disk = FileStateDisk(run.disk_dir)
    _assert_no_secret(
        [run],
        [
            master.key,
            master.salt,
            other.key,
            kms.get_dek("key-measurementSecret", 32),
            kms.get_dek("key-" + disk.uuid(), 32),
        ],
    )


def test_a_worker_rejoining_serves_no_recovery(node: Node, reboot: Any) -> None:
    """Only control planes wait for the operator (upstream's workers have no recovery server)."""
    run = Run(node, "proc-worker-rec", Role.WORKER, endpoint="127.0.0.1", join_port=_free_port())
    disk = FileStateDisk(run.disk_dir)
    disk.update_passphrase(secrets.token_bytes(32))  # initialized: the rejoin branch
    proc = run.start(_free_port())
    deadline = time.monotonic() + 60
    while "rejoining" not in run.log_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", run.recovery_port), timeout=1).close()
    proc.terminate()
    assert proc.wait(30) == 0
    assert "recovery server listening" not in run.log_text()


def test_a_recovery_port_in_use_leaves_the_rejoin_running(node: Node) -> None:
    run = Run(node, "proc-cp-busy", Role.CONTROL_PLANE, endpoint="127.0.0.1", join_port=_free_port())
    FileStateDisk(run.disk_dir).update_passphrase(secrets.token_bytes(32))  # initialized: the rejoin branch
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", run.recovery_port))
        taken.listen()
        proc = run.start(_free_port())
        deadline = time.monotonic() + 60
        while "recovery server not started; rejoining only" not in run.log_text():
            assert proc.poll() is None and time.monotonic() < deadline, run.log_text()[-2000:]
            time.sleep(0.1)
        time.sleep(0.5)
        assert proc.poll() is None  # still asking for a rejoin ticket
        assert "rejoin" in run.log_text() and "Traceback" not in run.log_text()
        proc.terminate()
        assert proc.wait(30) == 0
