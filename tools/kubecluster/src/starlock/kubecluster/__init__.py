"""A real local Kubernetes control plane for Starlock's tests and demo (test tooling, not published).

``ensure_binaries()`` builds etcd, kube-apiserver, kube-controller-manager, kubeadm and kubectl
from the pinned Go module ``tools/kube``; ``ControlPlane`` starts them on loopback with a PKI laid
out by the real kubeadm. ``python -m starlock.kubecluster up`` starts one for a person.
"""

from starlock.kubecluster.build import BINARIES, KUBERNETES_VERSION, Binaries, default_bin_dir, ensure_binaries
from starlock.kubecluster.cluster import ControlPlane, Ports
from starlock.kubecluster.errors import BuildError, ComponentError, KubeClusterError

__all__ = [
    "BINARIES",
    "KUBERNETES_VERSION",
    "Binaries",
    "BuildError",
    "ComponentError",
    "ControlPlane",
    "KubeClusterError",
    "Ports",
    "default_bin_dir",
    "ensure_binaries",
]
