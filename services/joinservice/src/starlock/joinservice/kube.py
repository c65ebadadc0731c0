"""The join service's Kubernetes adapter (official ``kubernetes`` client): what it reads and
writes, spec §2.9. Connection failures and API-server 5xx become :class:`Unavailable`."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from starlock.joinservice.errors import Conflict, JoinServiceError, Unavailable

__all__ = ["CONTROL_PLANE_JOINING_NODE", "KubeAdapter", "new_api_client"]

GROUP, VERSION = "update.edgeless.systems", "v1alpha1"
NODE_VERSION_NAME = "constellation-version"
CONTROL_PLANE_JOINING_NODE = "control-plane"
FIELD_MANAGER = "join-service"
CERT_CACHE = "sev-snp-cert-cache"
_TIMEOUT = (5.0, 15.0)  # connect, read
T = TypeVar("T")


def new_api_client(kubeconfig: Path | None) -> client.ApiClient:
    """An API client from ``kubeconfig``, or the in-cluster service account when None."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, ValueError) as exc:
        raise JoinServiceError(f"kubernetes client: {exc}") from None
    configuration.connection_pool_maxsize = 64
    configuration.retries = 1
    return client.ApiClient(configuration)


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        if exc.status in (0, 429, 500, 502, 503, 504) or exc.status is None:
            raise Unavailable(f"API server: {what}: {exc.status} {exc.reason}") from None
        raise JoinServiceError(f"API server: {what}: {exc.status} {exc.reason}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(f"API server: {what}: unreachable ({type(exc).__name__})") from None


def _deadline_passed(spec: Any, now: datetime.datetime) -> bool:
    text = spec.get("deadline") if isinstance(spec, dict) else None
    if not isinstance(text, str):
        return True  # no deadline: a stale object
    try:
        deadline = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return True
    if deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=datetime.UTC)
    return deadline <= now


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeAdapter:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        with _mapped(what):
            return fn()

    def create_secret(self, manifest: dict[str, Any]) -> None:
        """Create (fail if it exists) the bootstrap token Secret."""
        ns = manifest["metadata"]["namespace"]
        self.call(
            "create bootstrap token Secret",
            lambda: self._core.create_namespaced_secret(ns, manifest, _request_timeout=_TIMEOUT),  # type: ignore[arg-type]  # dicts are sent as they are
        )

    def components_reference(self) -> str:
        obj = self.call(
            f"get NodeVersion {NODE_VERSION_NAME}",
            lambda: self._custom.get_cluster_custom_object(
                GROUP, VERSION, "nodeversions", NODE_VERSION_NAME, _request_timeout=_TIMEOUT
            ),
        )
        ref = (obj.get("spec") or {}).get("kubernetesComponentsReference") if isinstance(obj, dict) else None
        if not isinstance(ref, str) or not ref:
            raise JoinServiceError(f"NodeVersion {NODE_VERSION_NAME} has no spec.kubernetesComponentsReference")
        return ref

    def components_config_map(self, name: str) -> tuple[str, str]:
        """(``components`` JSON, ``cluster-version``) of ``kube-system/<name>``."""
        cm = self.call(
            f"get ConfigMap kube-system/{name}",
            lambda: self._core.read_namespaced_config_map(name, "kube-system", _request_timeout=_TIMEOUT),
        )
        data = cm.data or {}
        if "components" not in data:
            raise JoinServiceError(f"ConfigMap kube-system/{name} has no 'components'")
        return data["components"], data.get("cluster-version", "")

    def _joining_node(
        self, name: str, node: str, components_ref: str, control_plane: bool, deadline: datetime.datetime
    ) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "JoiningNode",
            "metadata": {"name": name},
            "spec": {
                "name": node,
                "componentsreference": components_ref,
                "iscontrolplane": control_plane,
                "deadline": rfc3339(deadline),
            },
        }

    def apply_worker_joining_node(self, node: str, components_ref: str, deadline: datetime.datetime) -> None:
        body = self._joining_node(node, node, components_ref, False, deadline)
        self.call(
            f"apply JoiningNode {node}",
            lambda: self._custom.patch_cluster_custom_object(
                GROUP,
                VERSION,
                "joiningnodes",
                node,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=_TIMEOUT,
            ),
        )

    def claim_control_plane(
        self, node: str, components_ref: str, deadline: datetime.datetime, now: datetime.datetime
    ) -> None:
        """Create the ``control-plane`` JoiningNode; one control plane joins at a time (etcd).

        Upstream fails every later control plane until an operator deletes a stale object; here an
        object whose deadline passed is taken over (a replace bound to its resourceVersion, so two
        takers cannot both win), and a live one gives :class:`Conflict` naming holder and deadline.
        """
        body = self._joining_node(CONTROL_PLANE_JOINING_NODE, node, components_ref, True, deadline)
        try:
            self._custom.create_cluster_custom_object(GROUP, VERSION, "joiningnodes", body, _request_timeout=_TIMEOUT)
            return
        except ApiException as exc:
            if exc.status != 409:
                with _mapped("create JoiningNode control-plane"):
                    raise
        except (urllib3.exceptions.HTTPError, OSError):
            with _mapped("create JoiningNode control-plane"):
                raise
        current = self.call(
            "get JoiningNode control-plane",
            lambda: self._custom.get_cluster_custom_object(
                GROUP, VERSION, "joiningnodes", CONTROL_PLANE_JOINING_NODE, _request_timeout=_TIMEOUT
            ),
        )
        if not isinstance(current, dict):
            raise JoinServiceError("API server: JoiningNode control-plane is not an object")
        spec = current.get("spec") or {}
        if spec.get("name") != node and not _deadline_passed(spec, now):
            raise Conflict(
                f"control plane {spec.get('name')!r} is joining until {spec.get('deadline')}; control planes join "
                "one at a time (etcd membership): retry later"
            )
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            self._custom.replace_cluster_custom_object(
                GROUP, VERSION, "joiningnodes", CONTROL_PLANE_JOINING_NODE, body, _request_timeout=_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict("another control plane took over the expired join slot first; retry later") from None
            with _mapped("replace JoiningNode control-plane"):
                raise

    # --- SEV-SNP certificate cache (spec §2.11) ----------------------------------------------

    def read_cert_cache(self) -> dict[str, str] | None:
        try:
            cm = self._core.read_namespaced_config_map(CERT_CACHE, "kube-system", _request_timeout=_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            with _mapped(f"get ConfigMap kube-system/{CERT_CACHE}"):
                raise
        except (urllib3.exceptions.HTTPError, OSError):
            with _mapped(f"get ConfigMap kube-system/{CERT_CACHE}"):
                raise
        return dict(cm.data or {})

    def write_cert_cache(self, data: dict[str, str], *, exists: bool) -> bool:
        """Create (or update the missing keys of) the cache; False if another replica created it first."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CERT_CACHE, "namespace": "kube-system"},
            "data": data,
        }
        if exists:
            self.call(
                f"update ConfigMap kube-system/{CERT_CACHE}",
                lambda: self._core.patch_namespaced_config_map(
                    CERT_CACHE, "kube-system", {"data": data}, _request_timeout=_TIMEOUT
                ),
            )
            return True
        try:
            self._core.create_namespaced_config_map("kube-system", body, _request_timeout=_TIMEOUT)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status == 409:
                return False
            with _mapped(f"create ConfigMap kube-system/{CERT_CACHE}"):
                raise
        return True

    def ping(self) -> None:
        self.call("version", lambda: client.VersionApi(self._api).get_code(_request_timeout=_TIMEOUT))
