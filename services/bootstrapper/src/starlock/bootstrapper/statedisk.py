"""The node's state disk (spec §5.7): the key from the KMS replaces the initial passphrase.

:class:`StateDisk` is the interface the init server, the join client and the rejoin use.
:class:`FileStateDisk` is the implementation for the local demo and the tests, **named as such**:
a directory standing in for the mapped LUKS2 volume, whose header file records the disk UUID,
whether it is initialized (LUKS2 token 0 ``diskIsInitialized``) and a check value of the key
(HMAC-SHA256 keyed with the key: the key itself is never stored). It protects nothing at rest;
it exists so the bootstrap flow runs where no block device can be encrypted.
:class:`Luks2StateDisk` is the real one, over the ``cryptsetup`` CLI.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Protocol

__all__ = ["FileStateDisk", "Luks2StateDisk", "StateDisk", "StateDiskError", "open_state_disk"]

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
    """The LUKS2 state disk through the ``cryptsetup`` CLI (spec §4.4, §5.7).

    ``device``: the LUKS2 block device, or its mapping ``/dev/mapper/<name>`` (the underlying
    device is then looked up with ``cryptsetup status``). ``initial_key_file``: the passphrase
    the disk was formatted with (written by the first boot's disk setup, 32 random bytes).
    Keys reach cryptsetup through pipes (``/dev/fd/N``), never through files or arguments.
    The ``diskIsInitialized`` flag is LUKS2 token 0,
    ``{"type":"constellation-state-disk","keyslots":[],"diskIsInitialized":…}``, as upstream.

    :meth:`unlock` checks the key against keyslot 0 (``open --test-passphrase``); mapping and
    mounting the volume is the OS image's job (``systemd-cryptsetup@state``), as upstream's
    disk-mapper does in the initramfs, and is not done here.
    """

    TOKEN_TYPE = "constellation-state-disk"  # noqa: S105 - a LUKS2 token type, not a password

    def __init__(
        self,
        device: str = "/dev/mapper/state",
        *,
        initial_key_file: Path = Path("/run/cryptsetup-keys.d/state.key"),
        mount_point: Path = Path("/run/state"),
        pbkdf_args: tuple[str, ...] = (),
        cryptsetup: str | None = None,
    ) -> None:
        binary = cryptsetup or shutil.which("cryptsetup") or shutil.which("cryptsetup", path="/usr/sbin:/sbin")
        if binary is None or not os.access(binary, os.X_OK):
            raise StateDiskError("cryptsetup is not installed (Debian package cryptsetup-bin)")
        self._cryptsetup = binary
        self._initial_key_file = initial_key_file
        self._mount_point = mount_point
        self._pbkdf_args = pbkdf_args
        self._lock = threading.Lock()
        self.device = self._underlying(device)

    def __repr__(self) -> str:
        return f"Luks2StateDisk({self.device!r})"

    def _run(self, args: list[str], *, keys: tuple[bytes, ...] = (), stdin: bytes | None = None) -> str:
        """Run cryptsetup; each key goes through its own pipe, named /dev/fd/N in ``args`` as {0}, {1}."""
        pipes = [os.pipe() for _ in keys]
        try:
            for (_, write_end), key in zip(pipes, keys, strict=True):
                os.write(write_end, key)  # 32 bytes: fits in a pipe buffer
                os.close(write_end)
            names = [f"/dev/fd/{read_end}" for read_end, _ in pipes]
            argv = [self._cryptsetup, *(a.format(*names) for a in args)]
            done = subprocess.run(  # noqa: S603 - cryptsetup with our own arguments
                argv,
                input=stdin,
                capture_output=True,
                pass_fds=[read_end for read_end, _ in pipes],
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise StateDiskError(f"cryptsetup {args[0]}: {type(exc).__name__}") from None
        finally:
            for read_end, write_end in pipes:
                for fd in (read_end, write_end):
                    with contextlib.suppress(OSError):
                        os.close(fd)
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise StateDiskError(f"cryptsetup {args[0]} failed ({done.returncode}): {reason[-1] if reason else ''}")
        return done.stdout.decode(errors="replace")

    def _underlying(self, device: str) -> str:
        if not device.startswith("/dev/mapper/"):
            return device
        status = self._run(["status", device.removeprefix("/dev/mapper/")])
        for line in status.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "device" and value.strip():
                return value.strip()
        raise StateDiskError(f"{device}: cryptsetup status names no underlying device")

    def uuid(self) -> str:
        return self._run(["luksUUID", self.device]).strip().lower()

    def mount_point(self) -> Path:
        return self._mount_point

    def _token(self) -> dict[str, object] | None:
        try:
            raw = self._run(["token", "export", "--token-id", "0", self.device])
        except StateDiskError:
            return None
        try:
            token = json.loads(raw)
        except ValueError:
            return None
        return token if isinstance(token, dict) and token.get("type") == self.TOKEN_TYPE else None

    def _set_initialized(self, value: bool) -> None:
        token = {"type": self.TOKEN_TYPE, "keyslots": [], "diskIsInitialized": value}
        self._run(
            ["token", "import", "--token-id", "0", "--token-replace", self.device], stdin=json.dumps(token).encode()
        )

    def is_initialized(self) -> bool:
        token = self._token()
        return token is not None and token.get("diskIsInitialized") is True

    def update_passphrase(self, key: bytes) -> None:
        if len(key) != 32:
            raise StateDiskError("the state disk key is 32 bytes")
        try:
            initial = self._initial_key_file.read_bytes()
        except OSError as exc:
            raise StateDiskError(f"the initial passphrase {self._initial_key_file}: {exc.strerror}") from None
        with self._lock:
            self._run(
                ["luksChangeKey", "--batch-mode", "--key-slot", "0", "--key-file", "{0}", *self._pbkdf_args,
                 self.device, "{1}"],
                keys=(initial, key),
            )  # fmt: skip
            self._set_initialized(True)

    def unlock(self, key: bytes) -> None:
        if not self.is_initialized():
            raise StateDiskError("the state disk is not initialized")
        try:
            self._run(["open", "--test-passphrase", "--key-slot", "0", "--key-file", "{0}", self.device], keys=(key,))
        except StateDiskError:
            raise StateDiskError("the key does not open the state disk") from None

    def mark_for_reset(self) -> None:
        with self._lock:
            self._set_initialized(False)


def open_state_disk(spec: str) -> StateDisk:
    """``file:DIR`` (the stand-in) or ``luks2[:DEVICE]`` (default device ``/dev/mapper/state``)."""
    kind, _, arg = spec.partition(":")
    if kind == "file" and arg:
        return FileStateDisk(Path(arg))
    if kind == "luks2":
        return Luks2StateDisk(arg or "/dev/mapper/state")
    raise StateDiskError(f"unknown state disk {spec!r}; expected file:DIR or luks2[:DEVICE]")
