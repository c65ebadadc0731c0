"""The error hierarchy of starlock.nodelock: every failure is a :class:`NodeLockError`."""

from __future__ import annotations

__all__ = [
    "InvalidClusterId",
    "LockFileError",
    "MarkingError",
    "NodeLockError",
    "TpmError",
    "TpmSupportMissing",
    "UnsupportedMarker",
]


class NodeLockError(Exception):
    """Base class of every error raised by starlock.nodelock."""


class TpmSupportMissing(NodeLockError):
    """tpm2-pytss (or the libtss2 libraries it wraps) is not installed."""


class TpmError(NodeLockError):
    """The TPM could not be opened, a TPM command failed, or its answer is unusable."""


class InvalidClusterId(NodeLockError, ValueError):
    """The cluster ID is not 32 bytes; nothing was locked or marked."""


class UnsupportedMarker(NodeLockError, NotImplementedError):
    """The node would be marked somewhere Starlock cannot write yet (TDX RTMR 2)."""


class LockFileError(NodeLockError):
    """The lock file's location is unusable (e.g. its directory is writable by others)."""


class MarkingError(NodeLockError):
    """This caller took the lock, but marking the node failed.

    The lock stays taken (``lock_held`` is always true): the point of no return has been
    passed, as in Constellation where ``TryLockOnce`` returns ``(true, err)``. ``stage`` says
    where it failed: ``"lock-file"`` (creating the lock file), ``"tpm-check"`` (opening the
    TPM or reading PCR 15 before marking) or ``"tpm-mark"`` (``TPM2_PCR_Event``). When the
    failure happened before the lock file was created, other processes may still take it.
    """

    lock_held = True

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage
