"""What the first node's bootstrapper creates after ``kubeadm init`` (spec §5.4 steps 7-10), for
every driver: the components ConfigMap, the Node annotation naming it, ``internal-config``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubernetes import client

from starlock.bootstrapper.initserver import InitParams

__all__ = [
    "COMPONENTS_ANNOTATION",
    "components_config_map_name",
    "create_components_config_map",
    "create_internal_config",
]

COMPONENTS_ANNOTATION = "constellation.edgeless.systems/kubernetes-components"


def components_config_map_name(components: list[Any]) -> str:
    digest = hashlib.sha256("".join(c.hash for c in components).encode()).hexdigest()
    return f"k8s-components-sha256-{digest}"


def _components_json(components: list[Any]) -> str:
    items = []
    for c in components:
        item: dict[str, Any] = {}
        for name in ("url", "hash", "install_path", "extract"):
            value = getattr(c, name)
            if value:
                item[name] = value
        items.append(item)
    return json.dumps(items, separators=(",", ":"))


def _create(core: client.CoreV1Api, config_map: client.V1ConfigMap) -> None:
    try:
        core.create_namespaced_config_map("kube-system", config_map)
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def create_components_config_map(core: client.CoreV1Api, params: InitParams) -> str:
    """``kube-system/k8s-components-sha256-<hex>``, immutable; returns its name."""
    name = components_config_map_name(params.components)
    _create(
        core,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name),
            data={"components": _components_json(params.components), "cluster-version": params.kubernetes_version},
            immutable=True,
        ),
    )
    return name


def create_internal_config(core: client.CoreV1Api) -> None:
    """The empty ``kube-system/internal-config`` ConfigMap."""
    _create(core, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="internal-config")))
