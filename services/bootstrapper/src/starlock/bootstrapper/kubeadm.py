"""The ``kubeadm`` driver: what a real node does (spec §5.4, §5.6), with kubeadm's v1beta4 API.

``init_cluster``: the InitConfiguration, ClusterConfiguration and KubeletConfiguration of §5.4
step 3, then ``kubeadm init phase preflight``, ``init phase certs all``, ``kubeadm init
--skip-phases=preflight,certs,addon/coredns[,addon/kube-proxy]`` and ``kubeadm kubeconfig user
--client-name <cluster>-admin --org system:masters`` (its output is the admin kubeconfig), then
the objects every driver creates (components ConfigMap, the Node annotated, ``internal-config``).
Both first install the components (:mod:`starlock.bootstrapper.installer`: https or ``data:``,
sha256-checked). ``join_cluster``: a JoinConfiguration with bootstrap-token discovery (endpoint, token, CA pin)
and ``kubeadm join -v=5 --config F``. ``start_kubelet``: ``systemctl enable --now kubelet``.

Upstream writes ``kubeadm.k8s.io/v1beta3``; kubeadm 1.37 reads v1beta4 only, whose ``extraArgs``
are lists of name/value pairs. The configuration files hold the bootstrap token: they are written
0600 into a private temporary directory and removed after the command. Control planes get the
audit policy (:mod:`.auditpolicy`) written before kubeadm runs, the policy file and the audit log
directory mounted into kube-apiserver's static pod (``apiServer.extraVolumes``: without them the
API server cannot open the file its flags name), the first node's kubelet serving certificate
(:mod:`.kubeletcert`), and etcd's I/O priority raised after kubeadm (:mod:`.etcdio`). The static
pod directory is recreated empty before ``kubeadm init`` and ``kubeadm join``, as upstream.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from starlock.bootstrapper.auditpolicy import AUDIT_LOG_DIR, AUDIT_POLICY_PATH, write_audit_policy
from starlock.bootstrapper.etcdio import prioritize_etcd
from starlock.bootstrapper.initserver import InitParams
from starlock.bootstrapper.metadata import InstanceMetadata

__all__ = ["KubeadmDriver", "KubeadmError"]

CRI_SOCKET = "unix:///run/containerd/containerd.sock"
PATCHES_DIR = "/opt/kubernetes/patches"
KUBELET_CERT = "/run/state/kubelet/pki/kubelet-client-crt.pem"
KUBELET_KEY = "/run/state/kubelet/pki/kubelet-client-key.pem"
TLS_CIPHERS = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]


class KubeadmError(Exception):
    """A kubeadm step failed (the message names the step, never the token)."""


Runner = Callable[[list[str], bytes | None], "subprocess.CompletedProcess[bytes]"]


def _run(argv: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=600, check=False)  # noqa: S603 - kubeadm/systemctl, our argv


def _args(**kv: str) -> list[dict[str, str]]:
    """v1beta4 ``extraArgs``: a list of name/value pairs (sorted, as kubeadm prints them)."""
    return [{"name": k.replace("_", "-"), "value": v} for k, v in sorted(kv.items()) if v]


@dataclass
class KubeadmDriver:
    node_name: str
    node_ip: str
    provider_id: str
    csp: str = "qemu"
    lb_host: str = ""
    kubeadm: str = "kubeadm"
    kubeconfig_dir: Path = Path("/etc/kubernetes")
    patches_dir: str = PATCHES_DIR
    root: Path = Path("/")
    run: Runner = field(default=_run, repr=False)
    prioritize_etcd: Callable[[], int | None] = field(default=prioritize_etcd, repr=False)

    @classmethod
    def for_node(
        cls,
        me: InstanceMetadata,
        *,
        root: Path = Path("/"),
        csp: str = "qemu",
        lb_host: str = "",
    ) -> KubeadmDriver:
        binary = shutil.which("kubeadm", path=f"/run/state/bin:{os.environ.get('PATH', '')}") or "kubeadm"
        return cls(
            me.name, me.vpc_ip, me.provider_id, csp=csp, lb_host=lb_host, kubeadm=binary,
            kubeconfig_dir=root / "etc" / "kubernetes", root=root,
        )  # fmt: skip

    # --- configuration --------------------------------------------------------------------

    def _kubelet_args(self, *, provider_id: bool) -> list[dict[str, str]]:
        external = self.csp in ("azure", "gcp", "aws")
        return _args(
            cloud_provider="external" if external else "",
            node_ip=self.node_ip,
            provider_id=self.provider_id if provider_id else "",
        )

    def init_configuration(self, params: InitParams) -> str:
        sans = ["127.0.0.1", self.node_ip, *params.apiserver_cert_sans]
        sans = [s for s in dict.fromkeys(sans) if s]
        endpoint = self.lb_host or self.node_ip
        version = params.kubernetes_version
        init = {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "InitConfiguration",
            "nodeRegistration": {
                "name": self.node_name,
                "criSocket": CRI_SOCKET,
                "kubeletExtraArgs": self._kubelet_args(provider_id=True),
            },
            "localAPIEndpoint": {"advertiseAddress": self.node_ip, "bindPort": 6443},
            "patches": {"directory": self.patches_dir},
        }
        # The gate is on by default and then removed: kubeadm 1.37 refuses its name.
        local_mode = _at_least(version, (1, 31)) and not _at_least(version, (1, 36))
        feature_gates = {"ControlPlaneKubeletLocalMode": True} if local_mode else {}
        cluster: dict[str, Any] = {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "ClusterConfiguration",
            "kubernetesVersion": version,
            "clusterName": params.cluster_name,
            "controlPlaneEndpoint": endpoint,
            "apiServer": {
                "certSANs": sans,
                "extraArgs": _args(
                    audit_policy_file=AUDIT_POLICY_PATH,
                    audit_log_path=f"{AUDIT_LOG_DIR}/audit.log",
                    audit_log_maxage="30",
                    audit_log_maxbackup="10",
                    audit_log_maxsize="100",
                    profiling="false",
                    kubelet_certificate_authority="/etc/kubernetes/pki/ca.crt",
                    tls_cipher_suites=",".join(TLS_CIPHERS),
                ),
                # kubeadm mounts only the PKI and CA bundles into the static pod
                "extraVolumes": [
                    {
                        "name": "audit-policy",
                        "hostPath": AUDIT_POLICY_PATH,
                        "mountPath": AUDIT_POLICY_PATH,
                        "readOnly": True,
                        "pathType": "File",
                    },
                    {
                        "name": "audit-log",
                        "hostPath": AUDIT_LOG_DIR,
                        "mountPath": AUDIT_LOG_DIR,
                        "readOnly": False,
                        "pathType": "DirectoryOrCreate",
                    },
                ],
            },
            "controllerManager": {"extraArgs": _args(profiling="false", terminated_pod_gc_threshold="1000")},
            "scheduler": {"extraArgs": _args(profiling="false")},
        }
        if feature_gates:
            cluster["featureGates"] = feature_gates
        if params.service_cidr:
            cluster["networking"] = {"serviceSubnet": params.service_cidr}
        return _documents(init, cluster, self._kubelet_configuration())

    def _kubelet_configuration(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "protectKernelDefaults": True,
            "tlsCipherSuites": TLS_CIPHERS,
            "staticPodPath": "/etc/kubernetes/manifests",
            "registerWithTaints": [
                {
                    "key": "node.cloudprovider.kubernetes.io/uninitialized",
                    "value": "true",
                    "effect": "PreferNoSchedule",
                },
                {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "PreferNoSchedule"},
            ],
            "tlsCertFile": KUBELET_CERT,
            "tlsPrivateKeyFile": KUBELET_KEY,
        }

    def join_configuration(self, api_server_endpoint: str, ca_pin: str, token: str, *, control_plane: bool) -> str:
        endpoint = api_server_endpoint
        if self.lb_host:  # spec §5.6: the load balancer replaces the ticket's endpoint
            endpoint = f"{self.lb_host}:{api_server_endpoint.rpartition(':')[2] or '6443'}"
        join: dict[str, Any] = {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "JoinConfiguration",
            "nodeRegistration": {
                "name": self.node_name,
                "criSocket": CRI_SOCKET,
                # upstream put providerID in a KubeletConfiguration document, which kubeadm join
                # ignores (it warns so); the kubelet flag does take effect
                "kubeletExtraArgs": self._kubelet_args(provider_id=True),
            },
            "discovery": {"bootstrapToken": {"apiServerEndpoint": endpoint, "token": token, "caCertHashes": [ca_pin]}},
            "patches": {"directory": self.patches_dir},
        }
        if control_plane:
            join["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": self.node_ip, "bindPort": 6443}}
            join["skipPhases"] = ["control-plane-prepare/download-certs"]
        return _documents(join)

    # --- actions ---------------------------------------------------------------------------

    @contextmanager
    def _config_file(self, text: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="starlock-kubeadm-") as tmp:
            path = Path(tmp) / "kubeadm.yaml"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            yield path

    def _kubeadm(self, step: str, args: list[str]) -> bytes:
        try:
            done = self.run([self.kubeadm, *args], None)
        except (OSError, subprocess.SubprocessError) as exc:
            raise KubeadmError(f"kubeadm {step}: {type(exc).__name__}: {exc}") from None
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise KubeadmError(f"kubeadm {step} failed ({done.returncode}): {' | '.join(tail)}")
        return done.stdout

    def _install(self, components: list[Any]) -> None:
        from starlock.bootstrapper.installer import InstallError, install_components

        try:
            install_components(components, root=self.root)
        except InstallError as exc:
            raise KubeadmError(f"installing the Kubernetes components: {exc}") from None

    def init_cluster(self, params: InitParams) -> bytes:
        self._install(params.components)
        skip = ["preflight", "certs", "addon/coredns"]
        if not params.conformance_mode:
            skip.append("addon/kube-proxy")
        write_audit_policy(self.root)
        with self._config_file(self.init_configuration(params)) as conf:
            self._kubeadm("init phase preflight", ["init", "phase", "preflight", "-v=5", "--config", str(conf)])
            self._kubeadm("init phase certs", ["init", "phase", "certs", "all", "-v=5", "--config", str(conf)])
            self._first_kubelet_certificate()
            self._recreate_manifests()
            self._kubeadm("init", ["init", "-v=5", f"--skip-phases={','.join(skip)}", "--config", str(conf)])
            kubeconfig = self._kubeadm(
                "kubeconfig user",
                ["kubeconfig", "user", "--client-name", f"{params.cluster_name}-admin", "--org", "system:masters",
                 "--config", str(conf)],
            )  # fmt: skip
        self.prioritize_etcd()
        self._after_init(params)
        return kubeconfig

    def _recreate_manifests(self) -> None:
        """Spec §5.4 step 4, §5.6: an empty static-pod directory (kubeadm's preflight wants it so)."""
        manifests = self.kubeconfig_dir / "manifests"
        try:
            if manifests.exists():
                shutil.rmtree(manifests)
            manifests.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            raise KubeadmError(f"recreating {manifests}: {exc.strerror}") from None

    def _first_kubelet_certificate(self) -> None:
        """Spec §5.4 step 4: the kubelet's serving certificate, signed with the CA kubeadm just made."""
        from starlock.bootstrapper.kubeletcert import write_first_node_certificate
        from starlock.joinservice.errors import JoinServiceError

        # where the KubeletConfiguration's tlsCertFile / tlsPrivateKeyFile name them (the state disk)
        out = self.root / KUBELET_CERT.lstrip("/").rsplit("/", 1)[0]
        try:
            write_first_node_certificate(
                self.kubeconfig_dir / "pki", out, self.node_name, self.node_ip, datetime.datetime.now(datetime.UTC)
            )
        except (OSError, ValueError, JoinServiceError) as exc:
            raise KubeadmError(f"the kubelet certificate: {type(exc).__name__}: {exc}") from None

    def _after_init(self, params: InitParams) -> None:
        from kubernetes import client, config

        from starlock.bootstrapper.kubeobjects import (
            COMPONENTS_ANNOTATION,
            create_components_config_map,
            create_internal_config,
        )

        admin = config.new_client_from_config(config_file=str(self.kubeconfig_dir / "admin.conf"))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(admin)
        deadline = time.monotonic() + 120
        while True:  # spec §5.4 step 6: the API server, every 5 s for up to 2 min
            try:
                core.list_namespace(limit=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise KubeadmError("the API server did not answer within 2 minutes after kubeadm init") from None
                time.sleep(5)
        name = create_components_config_map(core, params)
        core.patch_node(self.node_name, {"metadata": {"annotations": {COMPONENTS_ANNOTATION: name}}})
        create_internal_config(core)

    def join_cluster(
        self, api_server_endpoint: str, ca_pin: str, token: str, *, control_plane: bool, components: Sequence[Any] = ()
    ) -> None:
        self._install(list(components))
        text = self.join_configuration(api_server_endpoint, ca_pin, token, control_plane=control_plane)
        if control_plane:  # its kube-apiserver mounts the policy (the cluster's ClusterConfiguration)
            write_audit_policy(self.root)
        self._recreate_manifests()
        with self._config_file(text) as conf:
            self._kubeadm("join", ["join", "-v=5", "--config", str(conf)])
        if control_plane:
            self.prioritize_etcd()

    def start_kubelet(self) -> None:
        systemctl = shutil.which("systemctl") or "systemctl"
        try:
            done = self.run([systemctl, "enable", "--now", "kubelet.service"], None)
        except (OSError, subprocess.SubprocessError) as exc:
            raise KubeadmError(f"starting the kubelet: {type(exc).__name__}") from None
        if done.returncode != 0:
            raise KubeadmError(f"starting the kubelet: systemctl exited {done.returncode}")


def _at_least(version: str, minimum: tuple[int, int]) -> bool:
    parts = version.lstrip("v").split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= minimum
    except (IndexError, ValueError):
        return False


def _documents(*docs: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
