"""The node's state disk (spec §5.7): the key from the KMS replaces the initial passphrase.

:class:`StateDisk` is the interface the init server, the join client and the rejoin use.
:class:`FileStateDisk` is the implementation for the local demo and the tests, **named as such**:
a directory standing in for the mapped LUKS2 volume, whose header file records the disk UUID,
whether it is initialized (LUKS2 token 0 ``diskIsInitialized``) and a check value of the key
(HMAC-SHA256 keyed with the key: the key itself is never stored). It protects nothing at rest;
it exists so the bootstrap flow runs where no block device can be encrypted. A LUKS2
implementation over cryptsetup is not part of this version (:class:`Luks2StateDisk` says so).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Protocol

__all__ = ["FileStateDisk", "Luks2StateDisk", "StateDisk", "StateDiskError"]

_CHECK_LABEL = b"starlock-file-state-disk-v1"


class StateDiskError(Exception):
    """The state disk cannot be opened, re-keyed, unlocked or marked."""


class StateDisk(Protocol):
    def uuid(self) -> str:
        """The disk UUID, lower-case."""
        ...

    def mount_point(self) -> Path:
        """Where the unlocked volume's files are (production: /run/state)."""
        ...

    def is_initialized(self) -> bool: ...

    def update_passphrase(self, key: bytes) -> None:
        """Replace the initial passphrase with ``key`` and mark the disk initialized."""
        ...

    def unlock(self, key: bytes) -> None:
        """Open an initialized disk with ``key`` (after a reboot); wrong key → StateDiskError."""
        ...

    def mark_for_reset(self) -> None:
        """Mark the disk uninitialized: the next boot formats it (a fatal bootstrap error)."""
        ...


class FileStateDisk:
    """A directory standing in for the state disk (demo and tests only; see the module docs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._header = root / "header.json"
        self._lock = threading.Lock()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (root / "volume").mkdir(mode=0o700, exist_ok=True)
        if not self._header.exists():
            self._write({"uuid": str(uuid.uuid4()), "diskIsInitialized": False, "keyCheck": ""})

    def __repr__(self) -> str:
        return f"FileStateDisk({str(self.root)!r})"

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self._header.read_text())
        except (OSError, ValueError) as exc:
            raise StateDiskError(f"file state disk {self.root}: unreadable header ({exc})") from None
        if not isinstance(data, dict):
            raise StateDiskError(f"file state disk {self.root}: malformed header")
        return data

    def _write(self, data: dict[str, object]) -> None:
        tmp = self._header.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self._header)

    @staticmethod
    def _check(key: bytes) -> str:
        return hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest()

    def uuid(self) -> str:
        return str(self._read()["uuid"]).lower()

    def mount_point(self) -> Path:
        return self.root / "volume"

    def is_initialized(self) -> bool:
        return self._read().get("diskIsInitialized") is True

    def update_passphrase(self, key: bytes) -> None:
        if len(key) != 32:
            raise StateDiskError("the state disk key is 32 bytes")
        with self._lock:
            data = self._read()
            data.update(diskIsInitialized=True, keyCheck=self._check(key))
            self._write(data)

    def unlock(self, key: bytes) -> None:
        data = self._read()
        if data.get("diskIsInitialized") is not True:
            raise StateDiskError("the state disk is not initialized")
        if not hmac.compare_digest(str(data.get("keyCheck", "")), self._check(key)):
            raise StateDiskError("the key does not open the state disk")

    def mark_for_reset(self) -> None:
        with self._lock:
            data = self._read()
            data["diskIsInitialized"] = False
            self._write(data)


class Luks2StateDisk:
    """A LUKS2 state disk through cryptsetup: not implemented in this version of Starlock."""

    def __init__(self, device: str = "/dev/mapper/state") -> None:
        raise StateDiskError(
            "the LUKS2 state disk is not implemented yet; use --state-disk file:<dir> (the file-backed "
            "stand-in, which protects nothing at rest)"
        )
