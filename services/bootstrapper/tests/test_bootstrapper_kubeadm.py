"""The kubeadm driver: its configurations pass the real kubeadm's validation, ``kubeadm join``
runs its real discovery (``--dry-run``) against the real control plane, and init runs the
upstream command sequence and creates its objects on the real API server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client, config

from starlock.bootstrapper.auditpolicy import AUDIT_POLICY
from starlock.bootstrapper.initserver import InitParams
from starlock.bootstrapper.kubeadm import KubeadmDriver, KubeadmError
from starlock.bootstrapper.kubeobjects import COMPONENTS_ANNOTATION, components_config_map_name
from starlock.joinproto import components_pb2
from starlock.kubecluster import ControlPlane

TOKEN = "abcdef.0123456789abcdef"
KUBEADM_STANDIN = b"#!/bin/sh\necho kubeadm stand-in\n"
COMPONENT = components_pb2.Component(
    url="data:application/octet-stream;base64," + base64.b64encode(KUBEADM_STANDIN).decode(),
    hash="sha256:" + hashlib.sha256(KUBEADM_STANDIN).hexdigest(),
    install_path="/run/state/bin/kubeadm",
)


def _params(**kw: Any) -> InitParams:
    fields: dict[str, Any] = {
        "kubernetes_version": "v1.37.2",
        "cluster_name": "starlock-kubeadm",
        "conformance_mode": False,
        "components": [COMPONENT],
        "apiserver_cert_sans": ["203.0.113.9", "", "cluster.example"],
        "service_cidr": "10.96.0.0/12",
        "cluster_id": bytes(32),
    }
    fields.update(kw)
    return InitParams(**fields)


def _validate(plane: ControlPlane, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run(
        [str(plane.binaries.path("kubeadm")), "config", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def _pin(plane: ControlPlane) -> str:
    ca = x509.load_pem_x509_certificate(plane.ca_cert.read_bytes())
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def test_configurations_pass_real_kubeadm_validation(kube_control_plane: ControlPlane, tmp_path: Path) -> None:
    driver = KubeadmDriver("node-1", "192.0.2.5", "qemu:///node-1", lb_host="203.0.113.9")
    init_text = driver.init_configuration(_params())
    result = _validate(kube_control_plane, init_text, tmp_path)
    assert result.returncode == 0, result.stderr
    init, cluster, kubelet = yaml.safe_load_all(init_text)
    assert cluster["apiServer"]["certSANs"] == ["127.0.0.1", "192.0.2.5", "203.0.113.9", "cluster.example"]
    assert cluster["controlPlaneEndpoint"] == "203.0.113.9"
    assert {"name": "profiling", "value": "false"} in cluster["apiServer"]["extraArgs"]
    # what the audit flags name is mounted into kube-apiserver's static pod
    flags = {a["name"]: a["value"] for a in cluster["apiServer"]["extraArgs"]}
    mounts = {v["mountPath"]: v for v in cluster["apiServer"]["extraVolumes"]}
    policy = mounts[flags["audit-policy-file"]]
    assert policy["hostPath"] == flags["audit-policy-file"] and policy["readOnly"] and policy["pathType"] == "File"
    log_dir = mounts[str(Path(flags["audit-log-path"]).parent)]
    assert log_dir["hostPath"] == log_dir["mountPath"] and not log_dir["readOnly"]
    assert "featureGates" not in cluster  # ControlPlaneKubeletLocalMode: a name kubeadm 1.37 refuses
    assert {"name": "provider-id", "value": "qemu:///node-1"} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert kubelet["tlsCertFile"].endswith("kubelet-client-crt.pem")

    for control_plane in (False, True):
        text = driver.join_configuration("192.0.2.1:6443", "sha256:" + "ab" * 32, TOKEN, control_plane=control_plane)
        result = _validate(kube_control_plane, text, tmp_path)
        assert result.returncode == 0, result.stderr
        (join,) = yaml.safe_load_all(text)
        # the load balancer replaces the ticket's host, the port stays (spec §5.6)
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "203.0.113.9:6443"
        assert ("controlPlane" in join) is control_plane


def test_init_feature_gate_only_where_kubeadm_knows_it() -> None:
    driver = KubeadmDriver("n", "192.0.2.5", "p")
    gates = {
        v: next(d for d in yaml.safe_load_all(driver.init_configuration(_params(kubernetes_version=v)))
                if d["kind"] == "ClusterConfiguration").get("featureGates")
        for v in ("v1.30.9", "v1.31.0", "v1.35.4", "v1.36.0", "v1.37.2")
    }  # fmt: skip
    assert gates == {
        "v1.30.9": None,
        "v1.31.0": {"ControlPlaneKubeletLocalMode": True},
        "v1.35.4": {"ControlPlaneKubeletLocalMode": True},
        "v1.36.0": None,
        "v1.37.2": None,
    }


def test_kubeadm_join_discovers_the_real_cluster(kube_control_plane: ControlPlane, tmp_path: Path) -> None:
    """The driver's ``kubeadm join`` with ``--dry-run`` added: kubeadm's own token discovery (the
    cluster-info JWS for the token, the CA pin) against the real API server."""
    plane = kube_control_plane
    token = plane.kubeadm("token", "create", "--ttl", "10m", "--kubeconfig", str(plane.admin_kubeconfig)).strip()
    seen: list[list[str]] = []

    def dry_run(argv: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
        seen.append(argv)
        config_file = Path(argv[argv.index("--config") + 1])
        assert config_file.stat().st_mode & 0o777 == 0o600 and config_file.parent.stat().st_mode & 0o077 == 0
        dry_dir = Path("/etc/kubernetes/tmp")  # kubeadm --dry-run leaves its files here
        before = set(dry_dir.glob("kubeadm-join-dryrun*"))
        try:
            return subprocess.run(
                [*argv, "--dry-run", "--ignore-preflight-errors=all"],
                input=stdin,
                capture_output=True,
                timeout=120,
                check=False,
            )
        finally:
            for left in set(dry_dir.glob("kubeadm-join-dryrun*")) - before:
                shutil.rmtree(left, ignore_errors=True)

    patches = tmp_path / "patches"
    patches.mkdir()
    driver = KubeadmDriver(
        "kubeadm-dry", "127.0.0.1", "qemu:///dry", kubeadm=str(plane.binaries.path("kubeadm")),
        patches_dir=str(patches), run=dry_run,
    )  # fmt: skip
    endpoint = plane.server.removeprefix("https://")
    driver.join_cluster(endpoint, _pin(plane), token, control_plane=False)
    assert seen[0][1:3] == ["join", "-v=5"]
    assert not Path(seen[0][seen[0].index("--config") + 1]).exists()  # removed: it holds the token
    assert all(token not in arg for arg in seen[0])

    wrong_pin = "sha256:" + "00" * 32
    with pytest.raises(KubeadmError, match="kubeadm join failed") as failed:
        driver.join_cluster(endpoint, wrong_pin, token, control_plane=False)
    assert token.split(".")[1] not in str(failed.value)
    # (an unknown token is not tried here: kubeadm waits its whole discovery timeout for a JWS)


def test_init_runs_upstreams_sequence_and_creates_the_objects(kube_control_plane: ControlPlane, tmp_path: Path) -> None:
    """kubeadm init itself needs a container runtime; the runner records the sequence and, at
    ``init``, registers the Node as the kubelet would. The post-init objects are real."""
    plane = kube_control_plane
    admin = config.new_client_from_config(config_file=str(plane.admin_kubeconfig))
    core = client.CoreV1Api(admin)
    calls: list[list[str]] = []
    name = "kubeadm-init-node"
    policy = tmp_path / "etc" / "kubernetes" / "audit-policy.yaml"

    kubelet_pki = tmp_path / "run" / "state" / "kubelet" / "pki"

    def runner(argv: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        assert policy.read_text() == AUDIT_POLICY  # written before kubeadm runs
        # the kubelet's serving certificate exists once the CA does (after "certs all"), before init
        assert (kubelet_pki / "kubelet-client-crt.pem").exists() is (argv[1:3] != ["init", "phase"])
        if argv[1:3] == ["init", "-v=5"]:  # the static-pod directory recreated empty first
            assert not list((plane.root / "manifests").iterdir())
        out = b""
        if argv[1:3] == ["kubeconfig", "user"]:
            out = b"apiVersion: v1\nkind: Config\n"
        elif (
            argv[1] == "init"
            and argv[2] != "phase"
            and not core.list_node(field_selector=f"metadata.name={name}").items
        ):
            core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
        return subprocess.CompletedProcess(argv, 0, out, b"")

    driver = KubeadmDriver(
        "kubeadm-init-node", "192.0.2.8", "qemu:///i", kubeadm="kubeadm", kubeconfig_dir=plane.admin_kubeconfig.parent,
        run=runner, root=tmp_path, prioritize_etcd=lambda: calls.append(["etcd", "ioprio"]) and None,
    )  # fmt: skip
    params = _params()
    assert driver.init_cluster(params) == b"apiVersion: v1\nkind: Config\n"
    assert policy.stat().st_mode & 0o777 == 0o600
    _check_kubelet_certificate(plane, kubelet_pki, "kubeadm-init-node", "192.0.2.8")
    installed = tmp_path / "run" / "state" / "bin" / "kubeadm"  # the components first, hash-checked
    assert installed.read_bytes() == KUBEADM_STANDIN and installed.stat().st_mode & 0o777 == 0o544
    assert [c[1:3] for c in calls] == [
        ["init", "phase"], ["init", "phase"], ["init", "-v=5"], ["kubeconfig", "user"], ["ioprio"],
    ]  # fmt: skip
    assert "--skip-phases=preflight,certs,addon/coredns,addon/kube-proxy" in calls[2]
    assert calls[3][calls[3].index("--client-name") + 1] == "starlock-kubeadm-admin"
    components = components_config_map_name(params.components)
    assert core.read_namespaced_config_map(components, "kube-system").immutable
    assert core.read_node(name).metadata.annotations[COMPONENTS_ANNOTATION] == components
    core.read_namespaced_config_map("internal-config", "kube-system")

    calls.clear()
    for leftover in kubelet_pki.iterdir():  # a second init on a fresh state disk
        leftover.unlink()
    driver.init_cluster(_params(conformance_mode=True))
    assert "--skip-phases=preflight,certs,addon/coredns" in calls[2]


def _check_kubelet_certificate(plane: ControlPlane, pki: Path, name: str, ip: str) -> None:
    """The first node's kubelet certificate: the join service's profile, signed by the cluster CA."""
    cert = x509.load_pem_x509_certificate((pki / "kubelet-client-crt.pem").read_bytes())
    key = serialization.load_pem_private_key((pki / "kubelet-client-key.pem").read_bytes(), None)
    assert (pki / "kubelet-client-key.pem").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert all((pki / f).stat().st_mode & 0o777 == 0o600 for f in ("kubelet-client-crt.pem", "kubelet-client-key.pem"))
    ca = x509.load_pem_x509_certificate(plane.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == f"CN=system:node:{name},O=system:nodes"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [ip]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH}


def test_a_failing_step_is_named(tmp_path: Path) -> None:
    def failing(argv: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 1, b"", b"line1\n[ERROR Port-6443]: Port 6443 is in use\n")

    driver = KubeadmDriver("n", "192.0.2.5", "p", run=failing, root=tmp_path / "root")
    with pytest.raises(KubeadmError, match=r"init phase preflight failed \(1\).*Port 6443 is in use"):
        driver.init_cluster(_params())
    with pytest.raises(KubeadmError, match="starting the kubelet"):
        driver.start_kubelet()
    missing = KubeadmDriver("n", "192.0.2.5", "p", kubeadm=str(tmp_path / "no-kubeadm"), root=tmp_path / "root")
    with pytest.raises(KubeadmError, match="FileNotFoundError"):
        missing.join_cluster("192.0.2.1:6443", "sha256:" + "ab" * 32, TOKEN, control_plane=False)
    assert os.listdir(tmp_path) == ["root"]
    bad = _params(
        components=[components_pb2.Component(url=COMPONENT.url, hash="sha256:" + "00" * 32, install_path="/k")]
    )
    with pytest.raises(KubeadmError, match=r"installing the Kubernetes components: .*hash mismatch"):
        driver.init_cluster(bad)
    assert not (tmp_path / "root" / "k").exists()


@pytest.mark.parametrize("control_plane", [False, True])
def test_a_joining_control_plane_writes_the_audit_policy_and_raises_etcds_priority(
    tmp_path: Path, control_plane: bool
) -> None:
    calls: list[str] = []
    policy = tmp_path / "etc" / "kubernetes" / "audit-policy.yaml"

    manifests = tmp_path / "etc" / "kubernetes" / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "stale.yaml").write_text("left from an earlier attempt")

    def runner(argv: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
        calls.extend([argv[1], f"policy: {policy.exists()}"])
        assert manifests.is_dir() and not list(manifests.iterdir())  # kubeadm join's preflight wants it empty
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    driver = KubeadmDriver(
        "n", "192.0.2.5", "p", run=runner, root=tmp_path, kubeconfig_dir=tmp_path / "etc" / "kubernetes",
        prioritize_etcd=lambda: calls.append("ioprio") and None,
    )  # fmt: skip
    driver.join_cluster("192.0.2.1:6443", "sha256:" + "ab" * 32, TOKEN, control_plane=control_plane)
    if control_plane:
        assert calls == ["join", "policy: True", "ioprio"]
    else:
        assert calls == ["join", "policy: False"]  # a worker runs no API server and no etcd


@pytest.fixture(scope="module")
def audited_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second real control plane whose kube-apiserver runs with the driver's audit flags and policy."""
    from starlock.bootstrapper.auditpolicy import write_audit_policy
    from starlock.kubecluster.pytest_plugin import require_binaries

    binaries = require_binaries()
    root = tmp_path_factory.mktemp("audited")
    policy = write_audit_policy(root)
    log = root / "audit" / "audit.log"
    plane = ControlPlane(
        binaries=binaries,
        apiserver_args=(f"--audit-policy-file={policy}", f"--audit-log-path={log}", "--audit-log-mode=blocking"),
    )
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        plane.cleanup()


def test_the_audit_policy_keeps_secrets_out_of_the_real_api_servers_log(audited_plane: ControlPlane) -> None:
    """The real kube-apiserver loads the policy (it refuses to start on an invalid one); a Secret's
    and a ConfigMap's data never reach the audit log, other writes are logged with their body,
    health checks and leases are not logged."""
    admin = config.new_client_from_config(config_file=str(audited_plane.admin_kubeconfig))
    core = client.CoreV1Api(admin)
    secret_value = base64.b64encode(os.urandom(24)).decode()
    config_value = base64.b64encode(os.urandom(24)).decode()
    core.create_namespaced_secret(
        "kube-system",
        client.V1Secret(metadata=client.V1ObjectMeta(name="audit-secret"), string_data={"token": secret_value}),
    )
    core.read_namespaced_secret("audit-secret", "kube-system")
    core.create_namespaced_config_map(
        "kube-system",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="audit-config"), data={"kubeconfig": config_value}),
    )
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="audit-visible")))
    client.VersionApi(admin).get_code()
    log = Path(next(a.split("=", 1)[1] for a in audited_plane._apiserver_args if a.startswith("--audit-log-path=")))
    events = [json.loads(line) for line in log.read_text().splitlines()]
    text = log.read_text()
    assert secret_value not in text and base64.b64encode(secret_value.encode()).decode() not in text
    assert config_value not in text

    def about(resource: str, name: str) -> list[dict[str, Any]]:
        found = []
        for event in events:
            ref = event.get("objectRef", {})
            named = ref.get("name") or event.get("requestObject", {}).get("metadata", {}).get("name")
            if ref.get("resource") == resource and named == name:
                found.append(event)
        return found

    secret_events = [e for e in events if e.get("objectRef", {}).get("resource") == "secrets"]
    assert {e["verb"] for e in secret_events} >= {"create", "get"}
    assert all(e["level"] == "Metadata" and "requestObject" not in e for e in secret_events)
    namespace = about("namespaces", "audit-visible")
    assert namespace and namespace[0]["level"] == "Request"
    assert namespace[0]["requestObject"]["metadata"]["name"] == "audit-visible"
    assert not [e for e in events if e.get("requestURI", "").startswith(("/readyz", "/healthz", "/livez"))]
    assert not [e for e in events if e.get("objectRef", {}).get("resource") == "leases"]
    assert all(e["stage"] != "RequestReceived" for e in events)


def test_no_cluster_ca_after_the_certs_phase_is_a_named_error(tmp_path: Path) -> None:
    def ok(argv: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    driver = KubeadmDriver("n", "192.0.2.5", "p", run=ok, root=tmp_path, kubeconfig_dir=tmp_path / "etc" / "kubernetes")
    with pytest.raises(KubeadmError, match=r"the kubelet certificate: FileNotFoundError"):
        driver.init_cluster(_params())
    assert not (tmp_path / "run" / "state" / "kubelet" / "pki" / "kubelet-client-key.pem").exists()
