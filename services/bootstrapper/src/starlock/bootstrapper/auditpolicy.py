"""The API server's audit policy (spec §5.4 step 4): written on every control plane before kubeadm.

kubeadm starts kube-apiserver with ``--audit-policy-file`` and ``--audit-log-path``
(:mod:`.kubeadm`), and mounts the policy file and the log directory into its static pod. The
policy is Starlock's own; its aim is an audit trail without secrets in it:

* Secrets, ConfigMaps (the join config, the components), service-account token requests, token
  reviews and CSRs are logged at ``Metadata`` only: who did what to which object, never the body.
  A bootstrap token is a Secret; a kubeconfig, a key or a certificate can sit in either.
* Health, readiness, version and metrics endpoints, node heartbeats (Leases) and Events are not
  logged: they are most of the volume and say nothing about who changed the cluster.
* Every other write (create, update, patch, delete) is logged with its request body; reads
  (get, list, watch) as ``Metadata``.
* The ``RequestReceived`` stage is omitted (each request is logged once it has an answer).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AUDIT_LOG_DIR", "AUDIT_POLICY", "AUDIT_POLICY_PATH", "write_audit_policy"]

AUDIT_POLICY_PATH = "/etc/kubernetes/audit-policy.yaml"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  # Objects that carry keys, tokens or credentials: never their bodies.
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: "authentication.k8s.io"
        resources: ["tokenreviews"]
      - group: "certificates.k8s.io"
        resources: ["certificatesigningrequests"]
  # High volume, no changes of interest.
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/metrics"]
  - level: None
    resources:
      - group: "coordination.k8s.io"
        resources: ["leases"]
      - group: ""
        resources: ["events"]
      - group: "events.k8s.io"
        resources: ["events"]
  # Changes with their request; reads as metadata.
  - level: Request
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: Metadata
"""


def write_audit_policy(root: Path = Path("/")) -> Path:
    """Write :data:`AUDIT_POLICY` to ``root`` + :data:`AUDIT_POLICY_PATH` (0600, replaced atomically)."""
    path = root / AUDIT_POLICY_PATH.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(AUDIT_POLICY)
    tmp.replace(path)
    return path
