"""The control plane is laid out and configured the way the join service finds it in production."""

from __future__ import annotations

import json
import stat

import pytest
import yaml
from cryptography import x509
from kubernetes import client, dynamic

from starlock.kubecluster import KUBERNETES_VERSION, ControlPlane

# reference spec-services §2.6: what the join service hands a joining control plane
CONTROL_PLANE_FILES = [
    "ca.crt", "ca.key", "sa.key", "sa.pub",
    "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key",
]  # fmt: skip


def test_pki_is_kubeadm_shaped_and_private(kube_control_plane: ControlPlane) -> None:
    root = kube_control_plane.root
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for name in CONTROL_PLANE_FILES:
        assert (kube_control_plane.pki_dir / name).is_file(), name
    for name in ("ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key"):
        assert stat.S_IMODE((kube_control_plane.pki_dir / name).stat().st_mode) & 0o077 == 0, name
    ca = x509.load_pem_x509_certificate(kube_control_plane.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    admin = yaml.safe_load(kube_control_plane.admin_kubeconfig.read_text())
    assert admin["clusters"][0]["cluster"]["server"] == kube_control_plane.server
    # admin.conf's user is in kubeadm's cluster-admins group, as kubeadm >= 1.29 writes it
    cert = x509.load_pem_x509_certificate(
        __import__("base64").b64decode(admin["users"][0]["user"]["client-certificate-data"])
    )
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    assert orgs == ["kubeadm:cluster-admins"]


def test_kubeadm_objects_exist(admin_api: client.ApiClient) -> None:
    core = client.CoreV1Api(admin_api)
    kubeadm_config = core.read_namespaced_config_map("kubeadm-config", "kube-system")
    cluster_config = yaml.safe_load(kubeadm_config.data["ClusterConfiguration"])
    assert cluster_config["kubernetesVersion"] == KUBERNETES_VERSION
    assert "kubeconfig" in core.read_namespaced_config_map("cluster-info", "kube-public").data
    rbac = client.RbacAuthorizationV1Api(admin_api)
    names = {b.metadata.name for b in rbac.list_cluster_role_binding().items}
    # kubeadm's bootstrap-token RBAC: CSR creation, auto-approval, and cluster-admins
    assert {"kubeadm:kubelet-bootstrap", "kubeadm:node-autoapprove-bootstrap", "kubeadm:cluster-admins"} <= names


def test_constellation_crds_accept_objects(admin_api: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(admin_api)
    versions = dyn.resources.get(api_version="update.edgeless.systems/v1alpha1", kind="NodeVersion")
    joining = dyn.resources.get(api_version="update.edgeless.systems/v1alpha1", kind="JoiningNode")
    versions.create(
        body={
            "apiVersion": "update.edgeless.systems/v1alpha1",
            "kind": "NodeVersion",
            "metadata": {"name": "constellation-version"},
            "spec": {
                "kubernetesComponentsReference": "k8s-components-sha256-00",
                "kubernetesClusterVersion": "v1.37.2",
            },
        }
    )
    got = versions.get(name="constellation-version")
    assert got.spec.kubernetesComponentsReference == "k8s-components-sha256-00"
    joining.create(
        body={
            "apiVersion": "update.edgeless.systems/v1alpha1",
            "kind": "JoiningNode",
            "metadata": {"name": "control-plane"},
            "spec": {
                "name": "cp-1",
                "componentsreference": "x",
                "iscontrolplane": True,
                "deadline": "2026-12-05T10:00:00Z",
            },
        }
    )
    # the fixed control-plane name allows one CP join at a time: a second create conflicts
    with pytest.raises(dynamic.exceptions.ConflictError):
        joining.create(
            body={
                "apiVersion": "update.edgeless.systems/v1alpha1",
                "kind": "JoiningNode",
                "metadata": {"name": "control-plane"},
                "spec": {"name": "cp-2", "iscontrolplane": True},
            }
        )
    # the schema is enforced: a boolean field refuses a string
    with pytest.raises(dynamic.exceptions.UnprocessibleEntityError):
        joining.create(
            body={
                "apiVersion": "update.edgeless.systems/v1alpha1",
                "kind": "JoiningNode",
                "metadata": {"name": "bad"},
                "spec": {"iscontrolplane": "yes"},
            }
        )
    joining.delete(name="control-plane")
    versions.delete(name="constellation-version")


def test_kubectl_and_versions(kube_control_plane: ControlPlane) -> None:
    out = json.loads(kube_control_plane.kubectl("version", "-o", "json"))
    assert out["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert out["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
