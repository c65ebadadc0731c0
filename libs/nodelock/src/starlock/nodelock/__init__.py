"""One-way node lock: the first caller of :meth:`NodeLock.try_lock_once` marks PCR 15 with the cluster ID.

Wire-compatible with Constellation v2's ``bootstrapper/internal/nodelock`` and
``internal/attestation/initialize``: the marking is ``TPM2_PCR_Event(PCR 15, cluster_id)``, so the
SHA-256 bank holds ``SHA256(0^32 ‖ SHA256(cluster_id))`` after marking a freshly booted node.
"""

from __future__ import annotations

from starlock.nodelock._errors import (
    InvalidClusterId,
    LockFileError,
    MarkingError,
    NodeLockError,
    TpmError,
    TpmSupportMissing,
    UnsupportedMarker,
)
from starlock.nodelock._nodelock import Marker, NodeLock
from starlock.nodelock._tpm import (
    CLUSTER_ID_PCR,
    CLUSTER_ID_SIZE,
    DEFAULT_TCTI,
    is_node_bootstrapped,
    mark_node_as_bootstrapped,
    read_cluster_id_pcr,
)

__all__ = [
    "CLUSTER_ID_PCR",
    "CLUSTER_ID_SIZE",
    "DEFAULT_TCTI",
    "InvalidClusterId",
    "LockFileError",
    "Marker",
    "MarkingError",
    "NodeLock",
    "NodeLockError",
    "TpmError",
    "TpmSupportMissing",
    "UnsupportedMarker",
    "is_node_bootstrapped",
    "mark_node_as_bootstrapped",
    "read_cluster_id_pcr",
]
