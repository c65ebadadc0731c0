"""The Kubernetes manifests of deploy/kubernetes/base, on the real API server.

* rendered by kubectl's built-in kustomize and checked offline by ``kubernetes-validate --strict``
  (Kubernetes 1.37 schemas), and for the properties deploy/README.md promises (image tag =
  packaging/VERSION, security contexts, probes, ports, requests, no committed secret);
* every container's arguments accepted by the real entry point's parser;
* ``kubectl apply --server-side -k`` on the real control plane (etcd, kube-apiserver,
  kube-controller-manager; no kubelet, so the DaemonSets run no pods), idempotent;
* ``deploy/kubernetes/cluster-objects.sh`` creating the operator's objects, and the key service
  serving mutual TLS with exactly those Secrets' files;
* RBAC: ``kubectl auth can-i`` as each ServiceAccount, yes for every verb the code uses, no for
  what it must not do, and the complete rule list compared with an account that has no binding.
"""

from __future__ import annotations

import base64
import copy
import importlib
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, require_tool, run, unavailable

if importlib.util.find_spec("starlock.kubecluster") is not None:
    from starlock.kubecluster import ControlPlane

    pytest_plugins = ["starlock.kubecluster.pytest_plugin"]
else:  # the fixture then says what is missing
    ControlPlane = Any  # type: ignore[misc,assignment]

    @pytest.fixture(scope="session")
    def kube_control_plane() -> None:
        unavailable("starlock-kubecluster is not installed (pip install -e tools/kubecluster)")


BASE = ROOT / "deploy" / "kubernetes" / "base"
CLUSTER_OBJECTS = ROOT / "deploy" / "kubernetes" / "cluster-objects.sh"
VERSION = (ROOT / "packaging" / "VERSION").read_text().strip()
IMAGE = f"localhost/starlock-services:{VERSION}"
KUBERNETES_VERSION = "1.37.0"
NS = "kube-system"
JOIN_SA = f"system:serviceaccount:{NS}:join-service"
KEY_SA = f"system:serviceaccount:{NS}:key-service"
VERIFY_SA = f"system:serviceaccount:{NS}:verification-service"
NOBODY_SA = f"system:serviceaccount:{NS}:starlock-test-nobody"  # no binding: the baseline
JOININGNODES = "joiningnodes.update.edgeless.systems"
NODEVERSIONS = "nodeversions.update.edgeless.systems"

# (verb, resource[/name], namespace) the join service's code uses (kube.py, certcache.py)
JOIN_ALLOWED = [
    ("create", "secrets", NS),  # bootstrap token Secret
    ("get", "configmaps/k8s-components-sha256-0123", NS),  # components ConfigMap (hashed name)
    ("get", "configmaps/sev-snp-cert-cache", NS),
    ("create", "configmaps", NS),  # the cache, first replica
    ("patch", "configmaps/sev-snp-cert-cache", NS),  # the cache, a missing key filled
    ("get", f"{NODEVERSIONS}/constellation-version", None),
    ("create", JOININGNODES, None),  # control-plane claim; apply creating a worker's object
    ("patch", f"{JOININGNODES}/worker-1", None),  # a worker's JoiningNode, server-side apply
    ("get", f"{JOININGNODES}/control-plane", None),
    ("update", f"{JOININGNODES}/control-plane", None),  # an expired holder taken over
]
JOIN_FORBIDDEN = [
    ("get", "secrets", NS),
    ("list", "secrets", NS),
    ("list", "secrets", "*"),
    ("watch", "secrets", NS),
    ("delete", "secrets", NS),
    ("update", "secrets", NS),
    ("patch", "secrets", NS),
    ("get", "secrets/constellation-mastersecret", NS),
    ("create", "secrets", "default"),
    ("get", "nodes", None),
    ("list", "nodes", None),
    ("patch", "nodes", None),
    ("list", "configmaps", NS),
    ("get", "configmaps", "default"),
    ("update", "configmaps/sev-snp-cert-cache", NS),  # the code patches; update is not needed
    ("update", "configmaps/join-config", NS),
    ("patch", "configmaps/join-config", NS),
    ("patch", "configmaps/kube-proxy", NS),
    ("update", "configmaps/coredns", NS),
    ("delete", "configmaps", NS),
    ("create", "roles.rbac.authorization.k8s.io", NS),
    ("create", "rolebindings.rbac.authorization.k8s.io", NS),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("bind", "clusterroles.rbac.authorization.k8s.io", None),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
    ("impersonate", "users", None),
    ("create", "pods", NS),
    ("create", "serviceaccounts/token", NS),
    ("list", JOININGNODES, None),
    ("delete", JOININGNODES, None),
    ("get", f"{JOININGNODES}/worker-1", None),
    ("update", f"{JOININGNODES}/worker-1", None),
    ("get", f"{NODEVERSIONS}/other", None),
    ("update", f"{NODEVERSIONS}/constellation-version", None),
    ("create", "certificatesigningrequests.certificates.k8s.io", None),
]
# the key and verification services need nothing from the API server
NOTHING = [
    ("get", "secrets/constellation-mastersecret", NS),
    ("get", "secrets/key-service-tls", NS),
    ("list", "secrets", NS),
    ("create", "secrets", NS),
    ("get", "configmaps/join-config", NS),
    ("create", "configmaps", NS),
    ("get", "nodes", None),
    ("list", "pods", "*"),
    ("create", JOININGNODES, None),
    ("get", f"{NODEVERSIONS}/constellation-version", None),
]


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """The kubectl built for the control plane (kustomize built in), without starting it."""
    try:
        from starlock.kubecluster.build import ensure_binaries
        from starlock.kubecluster.errors import BuildError
    except ImportError:
        unavailable("starlock-kubecluster is not installed (pip install -e tools/kubecluster)")
        raise
    try:
        return ensure_binaries().path("kubectl")
    except BuildError as exc:
        unavailable(f"Kubernetes binaries unavailable (run scripts/build-kube.sh): {exc}")
        raise


@pytest.fixture(scope="session")
def rendered(kubectl: Path) -> list[dict[str, Any]]:
    res = run([str(kubectl), "kustomize", str(BASE)], timeout=60)
    assert res.returncode == 0, res.stderr
    return _docs(res.stdout)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- offline -----------------------------------------------------------------------------------


def test_kubernetes_validate_strict(rendered: list[dict[str, Any]]) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate is not installed (pip install kubernetes-validate)")
        raise
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    # strict really is strict: a misspelt field is refused
    bad = copy.deepcopy(_by_kind(rendered, "DaemonSet")["key-service"])
    bad["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_rendered_objects_are_what_the_readme_says(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered)
    assert not [k for k in kinds if k.startswith("Secret/")], "no Secret is committed (operator-made)"
    assert all(d["metadata"].get("namespace", NS) == NS for d in rendered)
    daemonsets = _by_kind(rendered, "DaemonSet")
    assert sorted(daemonsets) == ["join-service", "key-service", "verification-service"]
    for name, ds in daemonsets.items():
        pod = ds["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        (container,) = pod["containers"]
        assert container["image"] == IMAGE, name
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"], name
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= container.keys(), name
        if name == "verification-service":
            assert sc["privileged"] is True  # the TPM device; see the manifest
            assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"]
            assert {"path": "/dev/tpmrm0", "type": "CharDevice"} in [v.get("hostPath") for v in pod["volumes"]]
            assert pod["automountServiceAccountToken"] is False
        else:
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False, name
            assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}, name
        if name == "key-service":
            assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"]
            assert pod["automountServiceAccountToken"] is False
        if name in ("join-service", "verification-service"):
            probes = {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
            assert probes == {"/healthz", "/readyz"}, name
    services = _by_kind(rendered, "Service")
    ports = {n: [(p["port"], p.get("nodePort")) for p in s["spec"]["ports"]] for n, s in services.items()}
    assert ports == {
        "join-service": [(9090, 30090)],
        "key-service": [(9000, None)],
        "verification-service": [(9090, 30081), (8080, 30080)],
    }
    assert services["key-service"]["spec"]["type"] == "ClusterIP"
    projected = next(v for v in daemonsets["join-service"]["spec"]["template"]["spec"]["volumes"] if "projected" in v)
    assert [s["configMap"]["name"] for s in projected["projected"]["sources"]] == ["join-config", "internal-config"]


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


@pytest.mark.parametrize(
    ("daemonset", "module"),
    [
        ("join-service", "starlock.joinservice.cli"),
        ("key-service", "starlock.kms.keyservice.cli"),
        ("verification-service", "starlock.verificationservice.cli"),
    ],
)
def test_container_arguments_parse(rendered: list[dict[str, Any]], daemonset: str, module: str) -> None:
    """The real entry point's parser accepts the manifest's command line (env references expanded)."""
    try:
        cli = importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{module} is not installed here ({exc}): cannot check the container's arguments")
        raise
    (container,) = _by_kind(rendered, "DaemonSet")[daemonset]["spec"]["template"]["spec"]["containers"]
    env = {"HOST_IP": "192.0.2.1", "ATTESTATION_VARIANT": "qemu-vtpm", "CLOUD_PROVIDER": "qemu"}
    args = cli.parse_args(_expand(container["args"], env))
    if daemonset == "join-service":
        assert args.key_service_endpoint == "key-service.kube-system.svc:9000" and args.key_service_tls_ca
        assert args.api_server_endpoint == "192.0.2.1:6443"
    if daemonset == "key-service":
        assert args.tls_cert and args.unix is None and not args.insecure_plaintext
    if daemonset == "verification-service":
        assert not args.insecure_plaintext and args.tcti == "device:/dev/tpmrm0"


# --- on the real API server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied(kube_control_plane: ControlPlane) -> ControlPlane:
    plane = kube_control_plane
    out = plane.kubectl("apply", "--server-side", "--field-manager=starlock-deploy", "-k", str(BASE))
    assert "daemonset.apps/join-service serverside-applied" in out, out
    return plane


def test_apply_server_side(applied: ControlPlane) -> None:
    plane = applied
    # idempotent: nothing left to change
    diff = subprocess.run(
        [str(plane.binaries.path("kubectl")), "--kubeconfig", str(plane.admin_kubeconfig), "diff", "--server-side",
         "--field-manager=starlock-deploy", "-k", str(BASE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert diff.returncode == 0, diff.stdout + diff.stderr
    ds = json.loads(plane.kubectl("-n", NS, "get", "daemonsets", "-l", "app.kubernetes.io/part-of=starlock", "-o=json"))
    assert sorted(d["metadata"]["name"] for d in ds["items"]) == ["join-service", "key-service", "verification-service"]
    svc = json.loads(plane.kubectl("-n", NS, "get", "service", "join-service", "-o=json"))
    assert svc["spec"]["ports"][0]["nodePort"] == 30090


def _can_i(plane: ControlPlane, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["--all-namespaces"] if namespace == "*" else (["-n", namespace] if namespace else [])
    out = plane.kubectl("auth", "can-i", verb, resource, *scope, f"--as={who}", check=False).strip()
    assert out in ("yes", "no"), out
    return out == "yes"


def test_join_service_rbac(applied: ControlPlane) -> None:
    wrong_yes = [c for c in JOIN_FORBIDDEN if _can_i(applied, JOIN_SA, *c)]
    wrong_no = [c for c in JOIN_ALLOWED if not _can_i(applied, JOIN_SA, *c)]
    assert not wrong_yes and not wrong_no, {"allowed but must not be": wrong_yes, "needed but refused": wrong_no}


@pytest.mark.parametrize("account", [KEY_SA, VERIFY_SA])
def test_key_and_verification_services_get_nothing(applied: ControlPlane, account: str) -> None:
    assert [c for c in NOTHING if _can_i(applied, account, *c)] == []
    for namespace in (NS, "default"):
        assert _rules(applied, account, namespace) == _rules(applied, NOBODY_SA, namespace)


def _rules(plane: ControlPlane, who: str, namespace: str) -> set[str]:
    out = plane.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={who}")
    return {" ".join(line.split()) for line in out.splitlines()[1:] if line.strip()}


def test_join_service_rule_list_is_complete(applied: ControlPlane) -> None:
    """Everything beyond an unbound account's defaults, as `kubectl auth can-i --list` prints it."""
    extra = _rules(applied, JOIN_SA, NS) - _rules(applied, NOBODY_SA, NS)
    assert extra == {
        "configmaps [] [] [get create]",
        "secrets [] [] [create]",
        "configmaps [] [sev-snp-cert-cache] [patch]",
        f"{JOININGNODES} [] [] [create patch]",
        f"{JOININGNODES} [] [control-plane] [get update]",
        f"{NODEVERSIONS} [] [constellation-version] [get]",
    }
    assert _rules(applied, JOIN_SA, "default") - _rules(applied, NOBODY_SA, "default") == {
        f"{JOININGNODES} [] [] [create patch]",
        f"{JOININGNODES} [] [control-plane] [get update]",
        f"{NODEVERSIONS} [] [constellation-version] [get]",
    }


# --- the operator's objects ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_objects(applied: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_tool("openssl", "openssl")
    work = tmp_path_factory.mktemp("operator")
    key, salt, measurement_salt = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32)
    (work / "mastersecret.json").write_text(
        json.dumps({"key": base64.b64encode(key).decode(), "salt": base64.b64encode(salt).decode()})
    )
    attestation = {"measurements": {"15": {"expected": "00" * 32, "warnOnly": False}}}
    (work / "attestation.json").write_text(json.dumps(attestation))
    env = {**os.environ, "KUBECTL": str(applied.binaries.path("kubectl")), "KUBECONFIG": str(applied.admin_kubeconfig)}
    args = [
        "bash",
        str(CLUSTER_OBJECTS),
        *("--master-secret-json", str(work / "mastersecret.json")),
        *("--attestation-config", str(work / "attestation.json")),
        *("--measurement-salt", measurement_salt.hex()),
    ]
    res = run(args, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    again = run(args, timeout=120, env=env)  # a second run keeps the secrets, rewrites join-config
    assert again.returncode == 0 and "exists: kept" in again.stdout, again.stdout + again.stderr

    def secret(name: str) -> dict[str, bytes]:
        obj = json.loads(applied.kubectl("-n", NS, "get", "secret", name, "-o=json", secret_output=True))
        return {k: base64.b64decode(v) for k, v in obj["data"].items()}

    return {
        "key": key,
        "salt": salt,
        "measurement_salt": measurement_salt,
        "attestation": attestation,
        "mastersecret": secret("constellation-mastersecret"),
        "server": secret("key-service-tls"),
        "client": secret("join-service-key-service-client"),
        "join_config": json.loads(applied.kubectl("-n", NS, "get", "configmap", "join-config", "-o=json")),
    }


def test_cluster_objects_script(cluster_objects: dict[str, Any]) -> None:
    o = cluster_objects
    assert o["mastersecret"] == {"mastersecret": o["key"], "salt": o["salt"]}
    cm = o["join_config"]
    assert json.loads(cm["data"]["attestationConfig"]) == o["attestation"]
    assert base64.b64decode(cm["binaryData"]["measurementSalt"]) == o["measurement_salt"]
    assert "attestationConfig_backup" in cm["data"]  # the second run kept the previous one
    assert set(o["server"]) == set(o["client"]) == {"tls.crt", "tls.key", "ca.crt"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keyservice_with_cluster_files(cluster_objects: dict[str, Any], tmp_path: Path) -> Iterator[tuple[int, Path]]:
    try:
        importlib.import_module("starlock.kms.keyservice")
        importlib.import_module("starlock.joinproto")
    except ImportError as exc:
        unavailable(f"starlock-kms and starlock-joinproto are needed here ({exc})")
    files = tmp_path / "files"
    files.mkdir(mode=0o700)
    for name, content in {**cluster_objects["mastersecret"], **cluster_objects["server"]}.items():
        (files / name).write_bytes(content)
    for name, content in cluster_objects["client"].items():
        (files / f"client-{name}").write_bytes(content)
    port = _free_port()
    log = (tmp_path / "keyservice.log").open("wb")
    # the key service container's command line, with the Secrets' files where the pod mounts them
    proc = subprocess.Popen(
        [sys.executable, "-m", "starlock.kms.keyservice", "--port", str(port), "--listen-host", "127.0.0.1",
         "--tls-cert", str(files / "tls.crt"), "--tls-key", str(files / "tls.key"), "--tls-ca", str(files / "ca.crt"),
         "--master-secret", str(files / "mastersecret"), "--salt", str(files / "salt")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "keyservice.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the key service did not listen"
                time.sleep(0.1)
        yield port, files
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=40)
        log.close()


def test_key_service_serves_mtls_with_the_operator_secrets(
    keyservice_with_cluster_files: tuple[int, Path], cluster_objects: dict[str, Any]
) -> None:
    """The join service's client certificate gets the key the master secret derives, under the
    Service's DNS name; a client without a certificate gets nothing."""
    import grpc

    from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc
    from starlock.kms import DEK_PREFIX, MasterSecret, open_kms

    port, files = keyservice_with_cluster_files
    name = [("grpc.ssl_target_name_override", "key-service.kube-system.svc")]
    request = keyservice_pb2.GetDataKeyRequest(data_key_id="measurementSecret", length=32)
    creds = grpc.ssl_channel_credentials(
        (files / "client-ca.crt").read_bytes(),
        (files / "client-tls.key").read_bytes(),
        (files / "client-tls.crt").read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=name) as channel:
        reply = keyservice_pb2_grpc.APIStub(channel).GetDataKey(request, timeout=10)
    kms = open_kms(MasterSecret(cluster_objects["key"], cluster_objects["salt"]).to_uri())
    assert reply.data_key == kms.get_dek(DEK_PREFIX + "measurementSecret", 32)
    kms.close()
    anonymous = grpc.ssl_channel_credentials((files / "client-ca.crt").read_bytes())
    with (
        grpc.secure_channel(f"127.0.0.1:{port}", anonymous, options=name) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        keyservice_pb2_grpc.APIStub(channel).GetDataKey(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
