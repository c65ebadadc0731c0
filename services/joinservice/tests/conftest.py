"""Real parts for the join service: the control plane, a starlock-keyservice process, aTLS clients.

* ``kube_control_plane`` (session): etcd + kube-apiserver + kube-controller-manager (starlock.kubecluster).
* ``cluster`` (session): the shipped RBAC applied, a token of the ``join-service`` ServiceAccount
  (TokenRequest) in a kubeconfig, the NodeVersion CR and its components ConfigMap.
* ``keyservice`` (session): ``starlock-keyservice`` on a Unix socket with a known master secret.
* ``start_joinservice``: the service in-process on a loopback port, stopped afterwards.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from starlock.joinservice.cli import JoinService, parse_args, start
from starlock.kubecluster import ControlPlane
from starlock.kubecluster.services import KeyService, install_join_service_objects, service_account_kubeconfig

pytest_plugins = ["starlock.kubecluster.pytest_plugin"]

RBAC = Path(__file__).parents[3] / "deploy" / "kubernetes" / "base" / "join-service-rbac.yaml"
COMPONENTS = [
    {"url": "https://example.invalid/kubeadm", "hash": "sha256:" + "aa" * 32, "install_path": "/run/state/bin/kubeadm"},
    {"url": "data:application/json;base64,e30=", "hash": "sha256:" + "bb" * 32, "install_path": "/opt/patch.json"},
    {
        "url": "https://example.invalid/cni.tgz",
        "hash": "sha256:" + "cc" * 32,
        "install_path": "/opt/cni/bin",
        "extract": True,
    },
]
COMPONENTS_CM = "k8s-components-sha256-0123456789abcdef"
CLUSTER_VERSION = "v1.37.2"


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Cluster:
    plane: ControlPlane
    admin: client.ApiClient
    service_kubeconfig: Path
    kubeadm_config: Path


@pytest.fixture(scope="session")
def cluster(kube_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    plane = kube_control_plane
    install_join_service_objects(
        plane, RBAC, components=COMPONENTS, components_name=COMPONENTS_CM, cluster_version=CLUSTER_VERSION
    )
    directory = tmp_path_factory.mktemp("cluster")
    admin = config.new_client_from_config(config_file=str(plane.admin_kubeconfig))
    kubeadm_config = directory / "ClusterConfiguration"
    kubeadm_config.write_text("apiServer:\n  certSANs:\n  - 192.0.2.10\n  - cp.example.internal\n")
    service_kubeconfig = service_account_kubeconfig(plane, directory / "join-service.kubeconfig")
    return Cluster(plane, admin, service_kubeconfig, kubeadm_config)


# --- the key service ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keyservice() -> Iterator[KeyService]:
    with KeyService.create(extra_args=("--shutdown-grace", "1")) as service:
        yield service


# --- the join service ----------------------------------------------------------------------------


@dataclass
class ConfigDir:
    path: Path
    salt: bytes

    def write(self, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else content
        tmp = self.path / ".attestationConfig.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.path / "attestationConfig")


@pytest.fixture
def config_dir(tmp_path: Path) -> ConfigDir:
    directory = tmp_path / "config"
    directory.mkdir()
    salt = secrets.token_bytes(32)
    (directory / "measurementSalt").write_bytes(salt)
    (directory / "attestationConfig").write_text('{"measurements": {}}')
    return ConfigDir(directory, salt)


@pytest.fixture
def start_joinservice(
    cluster: Cluster, keyservice: KeyService, config_dir: ConfigDir
) -> Iterator[Callable[..., JoinService]]:
    started: list[JoinService] = []

    def run(
        *extra: str,
        variant: str = "dummy",
        kubeconfig: Path | None = None,
        key_endpoint: str | None = None,
        wait_ready: bool = True,
    ) -> JoinService:
        args = [
            "--attestation-variant", variant,
            "--key-service-endpoint", key_endpoint or keyservice.endpoint,
            "--config-dir", str(config_dir.path),
            "--kubernetes-dir", str(cluster.plane.root),
            "--kubeadm-config", str(cluster.kubeadm_config),
            "--kubeconfig", str(kubeconfig or cluster.service_kubeconfig),
            "--listen", "127.0.0.1:0",
            "--api-server-endpoint", "192.0.2.10:6443",
            "--config-poll-interval", "0.1",
            *(["--insecure-dummy"] if variant == "dummy" else []),
            *extra,
        ]  # fmt: skip
        service = start(parse_args(args))
        started.append(service)
        if wait_ready:
            assert service.ready.wait(30), "the join service never became ready"
        return service

    yield run
    for service in started:
        service.stop(grace=2)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what} not reached within {timeout} s")


class Background:
    """Run ``fn`` in a thread; ``result()`` re-raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._result: list[Any] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result.append(fn())
        except BaseException as exc:
            self._error.append(exc)

    def result(self, timeout: float = 60) -> Any:
        self._thread.join(timeout)
        if self._error:
            raise self._error[0]
        return self._result[0]
