"""What the Starlock services need around a control plane, shared by tests, benchmarks and demo.

In a real cluster Constellation's Helm charts and operators create these; here they are made
directly: the join service's RBAC and objects (components ConfigMap, the NodeVersion
``constellation-version``), a service account kubeconfig, and a real ``starlock-keyservice``
process on a Unix socket.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlock.kubecluster.cluster import ControlPlane

__all__ = ["KeyService", "install_join_service_objects", "service_account_kubeconfig"]


def service_account_kubeconfig(
    plane: ControlPlane, path: Path, *, account: str = "join-service", namespace: str = "kube-system"
) -> Path:
    """A kubeconfig (0600) holding a 4-hour token of ``namespace/account``."""
    token = plane.kubectl(
        "create", "token", account, "-n", namespace, "--duration=4h", secret_output=True
    ).strip()  # fmt: skip
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_cert)}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
        "current-context": "c",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out)
    return path


def install_join_service_objects(
    plane: ControlPlane,
    rbac: Path,
    *,
    components: list[dict[str, Any]],
    components_name: str,
    cluster_version: str = "v1.37.2",
) -> None:
    """Apply the join service's RBAC, the components ConfigMap and the NodeVersion (idempotent)."""
    from kubernetes import client, config

    plane.kubectl("apply", "-f", str(rbac))
    admin = config.new_client_from_config(config_file=str(plane.admin_kubeconfig))  # type: ignore[no-untyped-call]
    try:
        client.CoreV1Api(admin).create_namespaced_config_map(
            "kube-system",
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=components_name),
                data={"components": json.dumps(components), "cluster-version": cluster_version},
                immutable=True,
            ),
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    try:
        client.CustomObjectsApi(admin).create_cluster_custom_object(
            "update.edgeless.systems",
            "v1alpha1",
            "nodeversions",
            {
                "apiVersion": "update.edgeless.systems/v1alpha1",
                "kind": "NodeVersion",
                "metadata": {"name": "constellation-version"},
                "spec": {"kubernetesComponentsReference": components_name, "kubernetesClusterVersion": cluster_version},
            },
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise


@dataclass
class KeyService:
    """A real ``starlock-keyservice`` on a Unix socket, with a fresh master secret and salt."""

    directory: Path
    master_secret: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, *, extra_args: tuple[str, ...] = (), parent: Path | None = None) -> KeyService:
        """In a new private directory under ``parent`` (default /tmp: a socket path is bounded)."""
        if parent is not None and len(str(parent)) > 70:
            parent = None
        # mkdtemp: a private, unpredictable directory; /tmp keeps the socket path short
        directory = Path(tempfile.mkdtemp(prefix="slks-", dir=str(parent or "/tmp")))  # noqa: S108
        directory.chmod(0o700)
        service = cls(directory, secrets.token_bytes(32), secrets.token_bytes(32), extra_args)
        (directory / "mastersecret").write_bytes(service.master_secret)
        (directory / "salt").write_bytes(service.salt)
        return service

    @property
    def socket_path(self) -> Path:
        return self.directory / "ks" / "keyservice.sock"

    @property
    def endpoint(self) -> str:
        return f"unix:{self.socket_path}"

    @property
    def log(self) -> Path:
        return self.directory / "keyservice.log"

    @property
    def args(self) -> list[str]:
        return [
            sys.executable, "-m", "starlock.kms.keyservice", "--unix", str(self.socket_path),
            "--master-secret", str(self.directory / "mastersecret"), "--salt", str(self.directory / "salt"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> KeyService:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"starlock-keyservice exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.socket_path))
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"starlock-keyservice did not listen within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> KeyService:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
