"""The cross-process half of the node lock: a marker file created with ``O_CREAT | O_EXCL``.

Why a created file and not ``fcntl.flock``: a flock is released when its holder exits, which
would turn "locked" back into "unlocked" for the next process; the lock has one transition and
no way back. A file created exclusively stays until it is removed, and exactly one ``open`` with
``O_EXCL`` succeeds among any number of concurrent processes (POSIX guarantees it on local file
systems). The file belongs on a tmpfs such as ``/run`` so it lives exactly as long as PCR 15's
value: one boot.

The directory must not be writable by other users (they could create the file first and so
block the node, or swap the directory); it is created with mode 0700 when missing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from starlock.nodelock._errors import LockFileError

__all__ = ["check_lock_file_location", "create_lock_file"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def check_lock_file_location(lock_file: str | os.PathLike[str]) -> Path:
    """Create the lock file's directory (0700) if missing and refuse one others can write to."""
    path = Path(lock_file)
    if not path.name:
        raise LockFileError(f"lock file path {str(path)!r} names no file")
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as exc:
        raise LockFileError(f"cannot create or inspect the lock file directory {str(directory)!r}: {exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise LockFileError(f"lock file directory {str(directory)!r} is not a directory")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LockFileError(
            f"lock file directory {str(directory)!r} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); use a private directory such as /run/starlock"
        )
    if info.st_uid not in (0, os.geteuid()):
        # Its owner could create the lock file first and keep this node from ever bootstrapping.
        raise LockFileError(
            f"lock file directory {str(directory)!r} belongs to uid {info.st_uid}, not to root or this user"
        )
    return path


def create_lock_file(path: Path) -> bool:
    """Create ``path`` exclusively: True if this call created it, False if it already existed.

    Any other failure raises :class:`OSError`. The file holds the creator's process id, for
    people looking at a node; its content is never read back (an empty file still means locked).
    """
    try:
        fd = os.open(path, _FLAGS, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return True
