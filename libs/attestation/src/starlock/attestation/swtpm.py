"""Launch a software TPM 2.0 (swtpm) for tests and the local demo.

:class:`Swtpm` runs ``swtpm socket --tpm2`` on two free, consecutive loopback TCP ports (the
TPM command port ``P`` and the control port ``P + 1``, the layout the tpm2-tss ``swtpm`` TCTI
expects), waits until it answers a TPM command and exposes :attr:`Swtpm.tcti`, the TCTI string
for tpm2-pytss (``swtpm:host=127.0.0.1,port=P``)::

    with Swtpm() as tpm:
        esapi = ESAPI(tpm.tcti)
        ...
        tpm.restart()   # simulated reboot: PCRs reset, persistent objects and NV kept

swtpm manufactures a fresh TPM (all four PCR banks SHA-1/256/384/512 allocated, no EK) the
first time it starts on an empty state directory, so ``swtpm_setup`` is only run when an EK or
a particular bank allocation is asked for (``create_ek=True`` or ``pcr_banks=...``).

The binary is taken from the ``binary`` argument, else the ``STARLOCK_SWTPM`` environment
variable, else ``swtpm`` on ``PATH``; when none exists :class:`SwtpmNotFound` is raised.
Every failure raises a :class:`SwtpmError` (a :class:`RuntimeError`: a broken simulator is an
environment problem, not rejected evidence) whose message includes swtpm's own output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["BootedTpm", "Swtpm", "SwtpmError", "SwtpmNotFound", "booted_swtpm", "find_swtpm"]

_LOOPBACK = "127.0.0.1"
_PORT_ATTEMPTS = 20
_OUTPUT_LIMIT = 4000


class SwtpmError(RuntimeError):
    """swtpm could not be set up, started, reached or stopped."""


class SwtpmNotFound(SwtpmError):
    """The swtpm binary (or swtpm_setup, when needed) is not installed."""


def find_swtpm(binary: str | os.PathLike[str] | None = None) -> Path:
    """Locate the swtpm binary: ``binary``, else ``$STARLOCK_SWTPM``, else ``swtpm`` on PATH."""
    candidate = os.fspath(binary) if binary is not None else os.environ.get("STARLOCK_SWTPM") or "swtpm"
    found = shutil.which(candidate)
    if found is None:
        raise SwtpmNotFound(
            f"swtpm binary {candidate!r} not found or not executable; install the Debian packages "
            "'swtpm swtpm-tools' or set STARLOCK_SWTPM to the binary's path"
        )
    return Path(found)


def _reserve_port_pair() -> int:
    """A port P such that P and P + 1 were both free on the loopback interface just now."""
    for _ in range(_PORT_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((_LOOPBACK, 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second:
                try:
                    second.bind((_LOOPBACK, port + 1))
                except OSError:
                    continue
        return port
    raise SwtpmError(f"no two consecutive free TCP ports found on {_LOOPBACK} after {_PORT_ATTEMPTS} attempts")


# TPM2_GetRandom(8) without sessions: the readiness probe. Any TPM response header proves that
# swtpm itself (not another program that happens to listen on the port) serves commands.
_PROBE = struct.pack(">HIIH", 0x8001, 12, 0x0000017B, 8)
_RESPONSE_TAGS = (0x8001, 0x8002, 0x00C4)


def _tpm_answers(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=timeout) as conn:
            conn.sendall(_PROBE)
            header = conn.recv(10, socket.MSG_WAITALL)
    except OSError:
        return False
    if len(header) != 10:
        return False
    tag, size, _code = struct.unpack(">HII", header)
    return tag in _RESPONSE_TAGS and 10 <= size <= 4096


class Swtpm:
    """A swtpm process with its state directory; a context manager (start on enter, stop on exit).

    ``state_dir``: where the TPM state lives; a private temporary directory (removed on
    :meth:`close`) when omitted. A given directory is created if missing and never removed.
    ``create_ek`` / ``pcr_banks`` (e.g. ``("sha256",)``): manufacture the TPM with swtpm_setup
    on first use (only when the state directory holds no TPM state yet).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        binary: str | os.PathLike[str] | None = None,
        create_ek: bool = False,
        pcr_banks: Sequence[str] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._binary = find_swtpm(binary)
        self._owns_dir = state_dir is None
        self._state_dir = Path(tempfile.mkdtemp(prefix="starlock-swtpm-")) if state_dir is None else Path(state_dir)
        self._create_ek = create_ek
        self._pcr_banks = tuple(pcr_banks) if pcr_banks is not None else None
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._port: int | None = None
        self._closed = False

    # --- properties ------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._require_running().pid

    @property
    def port(self) -> int:
        """The TPM command port; the control port is ``port + 1``."""
        self._require_running()
        if self._port is None:  # pragma: no cover - set together with the process
            raise SwtpmError("swtpm is running but its port is unknown")
        return self._port

    @property
    def ctrl_port(self) -> int:
        return self.port + 1

    @property
    def tcti(self) -> str:
        """TCTI configuration for tpm2-tss / tpm2-pytss, e.g. ``swtpm:host=127.0.0.1,port=2321``."""
        return f"swtpm:host={_LOOPBACK},port={self.port}"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Swtpm:
        """Start swtpm (manufacturing the TPM first if asked); return self."""
        if self._closed:
            raise SwtpmError("this Swtpm was closed; create a new one")
        if self.running:
            raise SwtpmError(f"swtpm is already running (pid {self.pid})")
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._manufacture_if_needed()
        last_error = ""
        for _ in range(_PORT_ATTEMPTS):
            port = _reserve_port_pair()
            started, last_error = self._launch(port)
            if started:
                return self
            if "in use" not in last_error.lower():
                break
        raise SwtpmError(f"swtpm did not start on state dir {self._state_dir}: {last_error}")

    def stop(self) -> None:
        """Stop swtpm (SIGTERM, then SIGKILL after ``stop_timeout``) and reap it; idempotent."""
        process, self._process = self._process, None
        self._port = None
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=self._stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            elif process is not None:
                process.wait()
        finally:
            if self._output is not None:
                self._output.close()
                self._output = None

    def restart(self) -> None:
        """Simulated reboot: stop and start on the same state directory.

        PCRs start from their reset values again; persistent objects and NV indices remain.
        The ports (and so :attr:`tcti`) usually change.
        """
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop swtpm and remove the state directory if it is a temporary one."""
        self.stop()
        if self._owns_dir and not self._closed:
            shutil.rmtree(self._state_dir, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> Swtpm:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"port={self._port}" if self.running else "stopped"
        return f"Swtpm(state_dir={str(self._state_dir)!r}, {where})"

    # --- internals -------------------------------------------------------------------------

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            raise SwtpmError("swtpm is not running; call start() first")
        return self._process

    def _manufacture_if_needed(self) -> None:
        if not (self._create_ek or self._pcr_banks) or (self._state_dir / "tpm2-00.permall").exists():
            return
        setup = shutil.which("swtpm_setup", path=f"{self._binary.parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if setup is None:
            raise SwtpmNotFound("swtpm_setup not found; install the Debian package 'swtpm-tools'")
        # --tpm names the executable (and its "socket" subcommand) swtpm_setup drives.
        cmd = [
            setup,
            "--tpm2",
            "--tpm",
            f"{self._binary} socket",
            "--tpmstate",
            str(self._state_dir),
            "--not-overwrite",
        ]
        if self._create_ek:
            cmd.append("--createek")
        if self._pcr_banks:
            cmd += ["--pcr-banks", ",".join(self._pcr_banks)]
        try:
            result = subprocess.run(  # noqa: S603 - fixed argument list, no shell
                cmd, capture_output=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired:
            raise SwtpmError(f"swtpm_setup did not finish within 60 s for {self._state_dir}") from None
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")[-_OUTPUT_LIMIT:]
            raise SwtpmError(f"swtpm_setup failed with exit code {result.returncode}: {output.strip()}")

    def _launch(self, port: int) -> tuple[bool, str]:
        """Start swtpm on ``port``/``port + 1``; (True, "") once it answers a TPM command."""
        output = tempfile.TemporaryFile(prefix="starlock-swtpm-out-")  # noqa: SIM115 - kept while running
        cmd = [
            str(self._binary),
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={self._state_dir}",
            "--server",
            f"type=tcp,port={port},bindaddr={_LOOPBACK}",
            "--ctrl",
            f"type=tcp,port={port + 1},bindaddr={_LOOPBACK}",
            "--flags",
            "not-need-init,startup-clear",
        ]
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                cmd, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            output.close()
            if exc.errno in (errno.ENOENT, errno.EACCES):
                raise SwtpmNotFound(f"cannot execute swtpm at {self._binary}: {exc.strerror}") from None
            raise SwtpmError(f"cannot start swtpm at {self._binary}: {exc}") from None
        deadline = time.monotonic() + self._start_timeout
        while True:
            if process.poll() is not None:
                text = _read_output(output)
                output.close()
                return False, f"swtpm exited with code {process.returncode}: {text or '(no output)'}"
            if _tpm_answers(port, timeout=0.5):
                self._process, self._output, self._port = process, output, port
                return True, ""
            if time.monotonic() >= deadline:
                process.kill()
                process.wait()
                text = _read_output(output)
                output.close()
                raise SwtpmError(
                    f"swtpm did not answer TPM commands on {_LOOPBACK}:{port} within {self._start_timeout} s: "
                    f"{text or '(no output)'}"
                )
            time.sleep(0.005)


def _read_output(output: IO[bytes]) -> str:
    with contextlib.suppress(OSError):
        output.seek(0)
        return output.read()[-_OUTPUT_LIMIT:].decode(errors="replace").strip()
    return ""


@dataclass
class BootedTpm:
    """A running swtpm after a synthetic measured boot: its TCTI, the TCG event log, the events."""

    tpm: Swtpm
    event_log: Path
    events: list[Any]

    @property
    def tcti(self) -> str:
        return self.tpm.tcti

    def measurements(self, *, pcr15: bytes | None = bytes(32)) -> dict[str, dict[str, object]]:
        """The golden measurements of this boot (see ``measured_boot.golden_measurements``)."""
        from starlock.attestation.measured_boot import golden_measurements

        return golden_measurements(self.events, pcr15=pcr15)


@contextlib.contextmanager
def booted_swtpm(
    directory: str | os.PathLike[str],
    *,
    binary: str | os.PathLike[str] | None = None,
    events: Sequence[Any] | None = None,
) -> Iterator[BootedTpm]:
    """Start swtpm with its state in ``directory``/tpm, run the synthetic measured boot (``events``,
    default the standard one) writing ``directory``/eventlog.bin, and stop swtpm at the end."""
    from starlock.attestation.measured_boot import run_synthetic_boot

    root = Path(directory)
    with Swtpm(root / "tpm", binary=binary) as tpm:
        log = root / "eventlog.bin"
        booted = run_synthetic_boot(tpm.tcti, log, events)
        yield BootedTpm(tpm, log, booted)
