#!/usr/bin/env bash
# Build the pinned Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kubeadm, kubectl) from tools/kube into .cache/kube/<version>/bin (or $STARLOCK_KUBE_BIN).
# Does nothing when the binaries are already there for the same pins. Test tooling only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH="tools/kubecluster/src${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m starlock.kubecluster build "$@"
