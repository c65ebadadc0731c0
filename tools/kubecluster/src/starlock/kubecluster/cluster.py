"""A real Kubernetes control plane as local processes, envtest-style, with a kubeadm PKI.

:class:`ControlPlane` lays out the PKI and kubeconfigs with the real ``kubeadm init phase certs
all`` / ``kubeconfig``, starts etcd (mutual TLS on loopback), kube-apiserver (bootstrap-token
authentication, ``Node,RBAC`` authorization, service-account keys and client CA from that PKI) and
kube-controller-manager (kubeadm's controller set: the defaults plus ``bootstrapsigner`` and
``tokencleaner``, CSR signing with the cluster CA), runs ``kubeadm init phase bootstrap-token``
and ``upload-config all`` against it and applies the Constellation CRDs the join service uses.
There is no kubelet: nodes are what the bootstrapper's ``local`` driver registers.

Everything lives under a private (0700) temporary root; the files are where the join service
reads them in production (``<root>/admin.conf`` for ``/etc/kubernetes/admin.conf``,
``<root>/pki/...`` for ``/etc/kubernetes/pki/...``). :meth:`ControlPlane.stop` ends every
component by PID; the logs stay under ``<root>/logs`` until :meth:`ControlPlane.cleanup`.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from types import TracebackType

from starlock.kubecluster.build import KUBERNETES_VERSION, Binaries, ensure_binaries
from starlock.kubecluster.errors import ComponentError
from starlock.kubecluster.process import Component, free_port, https_get, port_is_free

__all__ = ["ControlPlane", "Ports"]

_LOOPBACK = "127.0.0.1"
SERVICE_SUBNET = "10.96.0.0/12"
CLUSTER_NAME = "starlock"
NODE_NAME = "starlock-control-plane"
CRDS = ("nodeversions.yaml", "joiningnodes.yaml")

_KUBEADM_CONFIG = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  # no advertiseAddress: kubeadm refuses a loopback one and picks the host's address for the
  # certificates; every component here binds to loopback only (certSANs below)
  bindPort: {apiserver}
nodeRegistration:
  name: {node}
  criSocket: unix:///var/run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: {cluster}
kubernetesVersion: {version}
certificatesDir: {pki}
controlPlaneEndpoint: {address}:{apiserver}
networking:
  serviceSubnet: {services}
apiServer:
  certSANs: [{address}, localhost]
"""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the components; any left as 0 is picked free at start."""

    apiserver: int = 0
    etcd_client: int = 0
    etcd_peer: int = 0
    controller_manager: int = 0

    def resolved(self) -> Ports:
        picked: dict[str, int] = {}
        for field in fields(Ports):
            value = getattr(self, field.name)
            while not value or value in picked.values():
                value = free_port()
            picked[field.name] = value
        return Ports(**picked)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback; a context manager."""

    def __init__(
        self,
        *,
        binaries: Binaries | None = None,
        root: Path | None = None,
        ports: Ports | None = None,
        start_timeout: float = 60.0,
        apiserver_args: tuple[str, ...] = (),
    ) -> None:
        self._binaries = binaries
        self._apiserver_args = apiserver_args
        self._root_given = root
        self._ports = ports or Ports()
        self._start_timeout = start_timeout
        self._root: Path | None = None
        self.components: list[Component] = []
        self.timings: dict[str, float] = {}
        self._started = False

    # --- where things are -----------------------------------------------------------------

    @property
    def root(self) -> Path:
        if self._root is None:
            raise ComponentError("control plane", "not started")
        return self._root

    @property
    def ports(self) -> Ports:
        return self._ports

    @property
    def pki_dir(self) -> Path:
        """kubeadm's certificate directory (production: /etc/kubernetes/pki)."""
        return self.root / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        """kubeadm's admin.conf (group kubeadm:cluster-admins), as the join service reads it."""
        return self.root / "admin.conf"

    @property
    def super_admin_kubeconfig(self) -> Path:
        return self.root / "super-admin.conf"

    @property
    def kubeadm_config(self) -> Path:
        return self.root / "kubeadm.yaml"

    @property
    def server(self) -> str:
        return f"https://{_LOOPBACK}:{self._ports.apiserver}"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = ensure_binaries()
        return self._binaries

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if exc is None:
            self.cleanup()

    def start(self) -> ControlPlane:
        if self._started:
            return self
        binaries = self.binaries
        missing = binaries.missing()
        if missing:
            raise ComponentError(
                missing[0], f"binary not found in {binaries.bin_dir}; run scripts/build-kube.sh to build it"
            )
        began = time.monotonic()
        if self._root_given is not None:
            self._root_given.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._root = self._root_given
        else:
            self._root = Path(tempfile.mkdtemp(prefix="starlock-kube-"))
        self._root.chmod(0o700)
        self._ports = self._ports.resolved()
        self._started = True
        try:
            self._lay_out_pki()
            self._start_etcd()
            self._start_apiserver()
            self._bind_cluster_admins()
            self._start_controller_manager()
            self._kubeadm_cluster_objects()
            self._apply_crds()
        except BaseException:
            self.stop()
            raise
        self.timings["ready"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()

    def cleanup(self) -> None:
        """Remove the private root (PKI, etcd data, logs); only after :meth:`stop`."""
        if self._root is not None and self._root_given is None:
            shutil.rmtree(self._root, ignore_errors=True)

    def logs(self, lines: int = 40) -> dict[str, str]:
        """The last ``lines`` lines of every component's log (for a failed test's report)."""
        out = {c.name: c.tail(lines) for c in self.components}
        kubeadm_log = self.log_dir / "kubeadm.log"
        if kubeadm_log.exists():
            out["kubeadm"] = "\n".join(kubeadm_log.read_text(errors="replace").splitlines()[-lines:])
        return out

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.components if c.pid is not None}

    # --- commands ---------------------------------------------------------------------------

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, secret_output: bool = False
    ) -> str:
        """Run the built kubectl against this control plane (admin.conf unless told otherwise).

        ``secret_output``: the output holds key material and is kept out of the log.
        """
        return self._run(
            "kubectl",
            [str(self.binaries.path("kubectl")), "--kubeconfig", str(kubeconfig or self.admin_kubeconfig), *args],
            check=check,
            secret_output=secret_output,
        )

    def kubeadm(self, *args: str) -> str:
        return self._run("kubeadm", [str(self.binaries.path("kubeadm")), *args])

    def _run(self, name: str, args: list[str], *, check: bool = True, secret_output: bool = False) -> str:
        log = self.log_dir / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
        with log.open("a") as out:
            shown = "(output not logged: key material)\n" if secret_output else result.stdout
            out.write(f"$ {' '.join(args[1:])}\n{shown}{result.stderr}")
        if check and result.returncode != 0:
            detail = [
                line
                for line in (result.stderr.strip() or result.stdout.strip()).splitlines()
                if line.strip() and not line.startswith("To see the stack trace")
            ]
            reason = detail[-1][:300] if detail else f"exit status {result.returncode}"
            raise ComponentError(name, f"'{' '.join(args[1:4])} ...' failed: {reason}", str(log))
        return result.stdout

    # --- steps ------------------------------------------------------------------------------

    def _step(self, name: str, began: float) -> None:
        self.timings[name] = time.monotonic() - began

    def _lay_out_pki(self) -> None:
        began = time.monotonic()
        self.kubeadm_config.write_text(
            _KUBEADM_CONFIG.format(
                address=_LOOPBACK,
                apiserver=self._ports.apiserver,
                node=NODE_NAME,
                cluster=CLUSTER_NAME,
                version=KUBERNETES_VERSION,
                pki=self.pki_dir,
                services=SERVICE_SUBNET,
            )
        )
        config = ["--config", str(self.kubeadm_config)]
        self.kubeadm("init", "phase", "certs", "all", *config)
        for kind in ("admin", "super-admin", "controller-manager"):
            self.kubeadm("init", "phase", "kubeconfig", kind, *config, "--kubeconfig-dir", str(self.root))
            # kubeadm points the local components at the host's advertise address; here the
            # API server listens on loopback only
            self.kubectl(
                "config", "set-cluster", CLUSTER_NAME, f"--server={self.server}", kubeconfig=self.root / f"{kind}.conf"
            )
        # The super-admin client certificate, as files, for the readiness probe.
        self._client_files("super-admin.conf", "super-admin")
        self._step("pki", began)

    def _client_files(self, kubeconfig: str, stem: str) -> tuple[Path, Path]:
        crt, key = self.root / f"{stem}.crt", self.root / f"{stem}.key"
        for path, field in ((crt, "client-certificate-data"), (key, "client-key-data")):
            data = self.kubectl(
                "config",
                "view",
                "--raw",
                "-o",
                f"jsonpath={{.users[0].user.{field}}}",
                kubeconfig=self.root / kubeconfig,
                secret_output=True,
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(base64.b64decode(data))
        return crt, key

    def _start(self, name: str, args: list[str]) -> Component:
        component = Component(name, [str(self.binaries.path(name)), *args], self.log_dir / f"{name}.log")
        self.components.append(component)
        return component.start()

    def _check_port(self, component: str, port: int) -> None:
        if not port_is_free(port):
            raise ComponentError(component, f"port {_LOOPBACK}:{port} is already in use", None)

    def _start_etcd(self) -> None:
        began = time.monotonic()
        p, pki = self._ports, self.pki_dir
        self._check_port("etcd", p.etcd_client)
        self._check_port("etcd", p.etcd_peer)
        client_url, peer_url = f"https://{_LOOPBACK}:{p.etcd_client}", f"https://{_LOOPBACK}:{p.etcd_peer}"
        etcd = self._start(
            "etcd",
            [
                f"--name={NODE_NAME}",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster={NODE_NAME}={peer_url}",
                f"--cert-file={pki / 'etcd/server.crt'}",
                f"--key-file={pki / 'etcd/server.key'}",
                f"--trusted-ca-file={pki / 'etcd/ca.crt'}",
                "--client-cert-auth=true",
                f"--peer-cert-file={pki / 'etcd/peer.crt'}",
                f"--peer-key-file={pki / 'etcd/peer.key'}",
                f"--peer-trusted-ca-file={pki / 'etcd/ca.crt'}",
                "--peer-client-cert-auth=true",
                "--listen-metrics-urls=",
                # test data only: fsync costs seconds per start on a shared disk
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            status, body = https_get(
                p.etcd_client,
                "/health",
                ca_file=pki / "etcd/ca.crt",
                cert_file=pki / "apiserver-etcd-client.crt",
                key_file=pki / "apiserver-etcd-client.key",
            )
            return status == 200 and b'"health":"true"' in body

        etcd.wait_until(healthy, timeout=self._start_timeout, what="healthy")
        self._step("etcd", began)

    def _start_apiserver(self) -> None:
        began = time.monotonic()
        p, pki = self._ports, self.pki_dir
        self._check_port("kube-apiserver", p.apiserver)
        apiserver = self._start(
            "kube-apiserver",
            [
                f"--advertise-address={_LOOPBACK}",
                f"--bind-address={_LOOPBACK}",
                f"--secure-port={p.apiserver}",
                f"--etcd-servers=https://{_LOOPBACK}:{p.etcd_client}",
                f"--etcd-cafile={pki / 'etcd/ca.crt'}",
                f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
                f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--enable-bootstrap-token-auth=true",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_SUBNET}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                # a loopback address may not be a Service endpoint; nothing here routes to it
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *self._apiserver_args,
            ],
        )
        crt, key = self.root / "super-admin.crt", self.root / "super-admin.key"

        def ready() -> bool:
            status, _ = https_get(p.apiserver, "/readyz", ca_file=pki / "ca.crt", cert_file=crt, key_file=key)
            return status == 200

        apiserver.wait_until(ready, timeout=self._start_timeout, what="ready (/readyz)")
        self._step("kube-apiserver", began)

    def _bind_cluster_admins(self) -> None:
        # What `kubeadm init` does with super-admin.conf (EnsureAdminClusterRoleBinding) before
        # admin.conf, whose group is kubeadm:cluster-admins, can do anything.
        self.kubectl(
            "create",
            "clusterrolebinding",
            "kubeadm:cluster-admins",
            "--clusterrole=cluster-admin",
            "--group=kubeadm:cluster-admins",
            kubeconfig=self.super_admin_kubeconfig,
        )

    def _start_controller_manager(self) -> None:
        began = time.monotonic()
        p, pki = self._ports, self.pki_dir
        self._check_port("kube-controller-manager", p.controller_manager)
        kubeconfig = self.root / "controller-manager.conf"
        kcm = self._start(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={_LOOPBACK}",
                f"--secure-port={p.controller_manager}",
                f"--cert-dir={self.root / 'controller-manager-serving'}",
                # kubeadm's controller set: the defaults plus the two bootstrap-token controllers
                "--controllers=*,bootstrapsigner,tokencleaner",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_SUBNET}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )

        def healthy() -> bool:
            status, _ = https_get(p.controller_manager, "/healthz", ca_file=None)
            return status == 200

        crt, key = self.root / "super-admin.crt", self.root / "super-admin.key"

        def controllers_run() -> bool:
            # the service-account controller gives every namespace its "default" account: the
            # controllers are running and reach the API server
            status, _ = https_get(
                p.apiserver,
                "/api/v1/namespaces/default/serviceaccounts/default",
                ca_file=pki / "ca.crt",
                cert_file=crt,
                key_file=key,
            )
            return status == 200

        kcm.wait_until(healthy, timeout=self._start_timeout, what="healthy (/healthz)")
        kcm.wait_until(controllers_run, timeout=self._start_timeout, what="running its controllers")
        self._step("kube-controller-manager", began)

    def _kubeadm_cluster_objects(self) -> None:
        began = time.monotonic()
        config = ["--config", str(self.kubeadm_config), "--kubeconfig", str(self.admin_kubeconfig)]
        self.kubeadm("init", "phase", "bootstrap-token", *config, "--skip-token-print")
        self.kubeadm("init", "phase", "upload-config", "all", *config)
        self._step("kubeadm", began)

    def _apply_crds(self) -> None:
        began = time.monotonic()
        crd_dir = resources.files("starlock.kubecluster") / "crds"
        names = []
        for name in CRDS:
            path = self.root / f"crd-{name}"
            path.write_text((crd_dir / name).read_text())
            self.kubectl("apply", "--server-side", "-f", str(path))
            names.append(f"crd/{name.removesuffix('.yaml')}.update.edgeless.systems")
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
        self._step("crds", began)
