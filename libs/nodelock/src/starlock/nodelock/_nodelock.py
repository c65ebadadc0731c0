"""The node lock: two states, one transition (unlocked → locked), marking the TPM once."""

from __future__ import annotations

import enum
import logging
import os
import threading
from pathlib import Path

from starlock.nodelock._errors import MarkingError, NodeLockError, TpmError, UnsupportedMarker
from starlock.nodelock._lockfile import check_lock_file_location, create_lock_file
from starlock.nodelock._tpm import DEFAULT_TCTI, Tpm, check_cluster_id, is_node_bootstrapped

__all__ = ["Marker", "NodeLock"]

_log = logging.getLogger("starlock.nodelock")


class Marker(enum.StrEnum):
    """Where a bootstrapped node is marked (Constellation picks it by attestation variant)."""

    #: TPM 2.0: ``TPM2_PCR_Event`` on PCR 15 (every variant except ``qemu-tdx``).
    TPM = "tpm"
    #: Intel TDX: extend RTMR 2 (``qemu-tdx``). Not implemented in Starlock.
    TDX = "tdx"


class NodeLock:
    """One-way node lock; whoever takes it marks the node's TPM with the cluster ID.

    ``tcti``: the TPM (``device:/dev/tpmrm0`` on a node; ``swtpm:host=…,port=…`` in tests).
    ``lock_file``: a path every process of this node agrees on (e.g. ``/run/starlock/nodelock``);
    it is created exclusively by the winner and never removed, so processes sharing it agree
    on a single winner. Without it, the lock only excludes callers sharing this instance
    (plus the check of PCR 15, which is not atomic across processes).
    ``marker``: :attr:`Marker.TPM`; :attr:`Marker.TDX` raises :class:`UnsupportedMarker`.
    """

    def __init__(
        self,
        tcti: str = DEFAULT_TCTI,
        lock_file: str | os.PathLike[str] | None = None,
        *,
        marker: Marker | str = Marker.TPM,
    ) -> None:
        try:
            chosen = Marker(marker)
        except ValueError:
            known = ", ".join(repr(m.value) for m in Marker)
            raise NodeLockError(f"unknown marker {marker!r}; expected one of {known}") from None
        if chosen is Marker.TDX:
            raise UnsupportedMarker(
                "marking a TDX node (extending RTMR 2 with the cluster ID) is not implemented; "
                "only TPM nodes (PCR 15) are supported"
            )
        self.tcti = tcti
        self.lock_file: Path | None = None if lock_file is None else check_lock_file_location(lock_file)
        self._mutex = threading.Lock()
        self._locked = False

    @property
    def locked(self) -> bool:
        """Whether this instance has seen the lock taken (by its own caller or anyone else)."""
        with self._mutex:
            return self._locked

    def try_lock_once(self, cluster_id: bytes) -> bool:
        """Take the lock and mark the TPM with ``cluster_id``; True only for the single winner.

        Returns False without touching the TPM when the lock was already taken (by another
        caller of this instance or, through the lock file, by another process); returns False
        after a read-only look when PCR 15 is already non-zero (the node was marked before, e.g.
        by the disk-mapper after a reboot). Raises :class:`InvalidClusterId` before taking the
        lock for a cluster ID that is not 32 bytes, and :class:`MarkingError` (lock still held)
        when the lock was taken but marking failed.
        """
        data = check_cluster_id(cluster_id)
        with self._mutex:
            if self._locked:
                return False
            self._locked = True  # the point of no return, whatever happens below
        if self.lock_file is not None:
            try:
                created = create_lock_file(self.lock_file)
            except OSError as exc:
                raise MarkingError(
                    f"node lock taken, but the lock file {str(self.lock_file)!r} could not be created: {exc}",
                    stage="lock-file",
                ) from exc
            if not created:
                _log.info("node lock already taken by another process (lock file %s exists)", self.lock_file)
                return False
        return self._mark(data)

    def _mark(self, cluster_id: bytes) -> bool:
        stage = "tpm-check"
        try:
            with Tpm(self.tcti) as tpm:
                if any(tpm.read_cluster_id_pcr()):
                    _log.info("node lock taken, but PCR 15 is already marked; not marking again")
                    return False
                stage = "tpm-mark"
                tpm.extend_cluster_id_pcr(cluster_id)
        except TpmError as exc:
            raise MarkingError(f"node lock taken, but marking the TPM failed: {exc}", stage=stage) from exc
        _log.info("node lock taken; PCR 15 marked with the cluster ID")
        return True

    def is_node_bootstrapped(self) -> bool:
        """Whether PCR 15 (SHA-256 bank) is non-zero, i.e. the node was marked since the last boot.

        This reads the TPM only (not the lock file). PCR 15 resets at every reboot, so after a
        reboot this is False until the node is marked again; knowing that a rebooted node *was*
        initialized is the state disk's job (see the README).
        """
        return is_node_bootstrapped(self.tcti)

    def __repr__(self) -> str:
        return f"NodeLock(tcti={self.tcti!r}, lock_file={self.lock_file!r}, locked={self.locked})"
