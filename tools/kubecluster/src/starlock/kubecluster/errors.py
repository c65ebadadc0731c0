"""Errors of the local control plane: one line each, naming the component and the log to read."""

from __future__ import annotations

__all__ = ["BuildError", "ComponentError", "KubeClusterError"]


class KubeClusterError(RuntimeError):
    """The local control plane could not be built, started, reached or stopped."""


class BuildError(KubeClusterError):
    """Building the Kubernetes binaries from their Go modules failed."""


class ComponentError(KubeClusterError):
    """A component (etcd, kube-apiserver, kube-controller-manager, kubeadm) failed."""

    def __init__(self, component: str, message: str, log: str | None = None) -> None:
        self.component = component
        self.log = log
        text = f"{component}: {message}"
        if log:
            text += f" (log: {log})"
        super().__init__(text)
